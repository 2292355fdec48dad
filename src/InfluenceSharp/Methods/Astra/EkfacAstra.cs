using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods.InfluenceFunctions;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Astra;

/// <summary>How the EK-FAC-preconditioned iterations refine the inverse-Hessian product.</summary>
public enum AstraIteration
{
    /// <summary>Preconditioned conjugate gradient started at the EK-FAC solution: the error in the
    /// (H + λI)-norm never grows from one step to the next.</summary>
    Pcg,
    /// <summary>ASTRA's preconditioned Neumann (Richardson) steps x ← x + η M⁻¹(b − (H + λI)x).</summary>
    Neumann,
}

/// <summary>Settings of <see cref="EkfacAstra"/>.</summary>
public sealed record AstraOptions
{
    /// <summary>The curvature, damping λ, L2, tracked layers and batch sizes of the system (H + λI) x = b
    /// that the iterations solve (the same settings as the if-* solvers). The Gauss-Newton matrix is
    /// the default here: EK-FAC approximates it, and it is positive semi-definite everywhere.</summary>
    public HvpSolverOptions System { get; init; } = new() { Hessian = HessianKind.GaussNewton };
    /// <summary>Iterations after the EK-FAC solution (step 0 = EK-FAC alone, no Hessian-vector product).</summary>
    public int Steps { get; init; } = 10;
    public AstraIteration Iteration { get; init; } = AstraIteration.Pcg;
    /// <summary>Neumann step size η (ASTRA: 1, the EK-FAC step itself); null = 1/μ̂, with μ̂ the
    /// largest eigenvalue of M⁻¹(H + λI) estimated by <see cref="PowerIterations"/> power iterations
    /// (every preconditioned eigen-direction then shrinks by |1 − ημ| &lt; 1, none diverges).</summary>
    public double? NeumannStep { get; init; } = 1.0;
    /// <summary>Training examples per Neumann step's curvature product, drawn afresh each step without
    /// replacement from a generator seeded by the system's seed (ASTRA's stochastic Neumann iterations);
    /// null = the whole training set (exact steps). A step then costs batch/n of a full one, so many
    /// more steps fit in the same time, at the price of noise in each.</summary>
    public int? NeumannBatchSize { get; init; }
    /// <summary>Power iterations (one Hessian-vector product on one vector each) for the automatic step.</summary>
    public int PowerIterations { get; init; } = 20;
    /// <summary>The damping added to EK-FAC's eigenvalues in the preconditioner; null = λ + L2 of the
    /// system (EK-FAC approximates the loss's curvature, without the L2 term).</summary>
    public double? PreconditionerDamping { get; init; }
    /// <summary>Stop a right-hand side early once ‖b − (H + λI)x‖ ≤ tol·‖b‖.</summary>
    public double Tolerance { get; init; } = 1e-12;
    /// <summary>Queries solved together. Each query's iterates are independent of the others', so
    /// solving the query set in blocks gives the same result, and bounds the iterations' working set
    /// (several [block, P] float64 vectors) whatever the number of queries.</summary>
    public int QueryBlockSize { get; init; } = 128;

    public void Validate()
    {
        void Check(bool ok, string message) { if (!ok) throw new InfluenceSharpException(message); }
        Check(Steps >= 0, $"ekfac-astra steps {Steps}: must be at least 0");
        Check(NeumannStep is null || (double.IsFinite(NeumannStep.Value) && NeumannStep.Value > 0), $"ekfac-astra Neumann step {NeumannStep}: must be positive");
        Check(NeumannBatchSize is null or >= 1, $"ekfac-astra Neumann batch size {NeumannBatchSize}: must be at least 1");
        Check(NeumannBatchSize is null || Iteration == AstraIteration.Neumann,
            "ekfac-astra: a Neumann batch size applies to the Neumann steps only; give --astra-neumann-step X or auto (conjugate gradient needs exact products)");
        Check(PowerIterations >= 1, $"ekfac-astra power iterations {PowerIterations}: must be at least 1");
        Check(PreconditionerDamping is null || (double.IsFinite(PreconditionerDamping.Value) && PreconditionerDamping.Value >= 0),
            $"ekfac-astra preconditioner damping {PreconditionerDamping}: must be a non-negative finite number");
        Check(double.IsFinite(Tolerance) && Tolerance >= 0, $"ekfac-astra tolerance {Tolerance}: must be non-negative");
        Check(QueryBlockSize >= 1, $"ekfac-astra query block size {QueryBlockSize}: must be at least 1");
        Check(System.Hessian == HessianKind.GaussNewton || System.Damping > 0 || Steps == 0,
            "ekfac-astra with the true Hessian needs damping > 0 (the Hessian may be indefinite); give --damping X > 0 or use --hessian gauss-newton");
    }
}

/// <summary>What the last solve reached: relative residuals per right-hand side after each step (step 0 = EK-FAC).</summary>
public sealed record AstraReport(int Steps, double[][] RelativeResiduals)
{
    public double MaxResidual => RelativeResiduals.Length == 0 || RelativeResiduals[^1].Length == 0 ? 0 : RelativeResiduals[^1].Max();

    /// <summary>The reports of blocks of right-hand sides as one, their columns side by side; a block
    /// that stopped early keeps its last residuals for the later steps.</summary>
    public static AstraReport Concat(IReadOnlyList<AstraReport> blocks)
    {
        if (blocks.Count == 1) return blocks[0];
        int rows = blocks.Max(b => b.RelativeResiduals.Length);
        var merged = Enumerable.Range(0, rows).Select(k => blocks.SelectMany(b =>
            b.RelativeResiduals.Length == 0 ? Array.Empty<double>() : b.RelativeResiduals[Math.Min(k, b.RelativeResiduals.Length - 1)]).ToArray()).ToArray();
        return new AstraReport(blocks.Max(b => b.Steps), merged);
    }
}

/// <summary>
/// ASTRA (Wang et al. 2025): influence functions whose inverse-Hessian products (H + λI)⁻¹∇f(q) are
/// EK-FAC's, refined by a few iterations on the true system with Hessian-vector products, EK-FAC
/// as the preconditioner M ≈ H + λI. Step 0 is the EK-FAC solution M⁻¹b itself; more steps move
/// it towards the exact solution (if-explicit's) at one batched HVP pass over the training set each.
/// Queries are solved together (batched), as if-cg does; scores ∇f(q)ᵀ x_q · ∇L(z), positive = helpful.
/// Self-influence needs a solve per training example (done batched, one solve per batch).
/// </summary>
public sealed class EkfacAstra : IAttributionMethod, IWeightedQueryAttribution, IDisposable
{
    private readonly CurvatureOperator curvature;
    private readonly PerExampleGradients gradients;
    private readonly List<TrackedLayer> layers;
    private readonly List<Preconditioner> pre;         // per tracked layer, float64
    private readonly long[] sizes;
    private (IDataset Queries, int Count, Tensor Solved)? cached;

    /// <summary>An ASTRA influence function of <paramref name="model"/> with EK-FAC
    /// <paramref name="factors"/> fitted on the same model and tracked layers.</summary>
    public EkfacAstra(nn.Module<Tensor, Tensor> model, IAttributionTask task, IDataset train, Factors factors,
        AstraOptions? options = null, Profiler? profiler = null)
    {
        Options = options ?? new AstraOptions();
        Options.Validate();
        var so = Options.System;
        layers = TrackedLayer.Find(model, so.Layers);
        if (layers.Count == 0) throw new InfluenceSharpException($"ekfac-astra: no Linear or Conv2d layer matches '{so.Layers}'");
        curvature = new CurvatureOperator(model, task, layers, train, so.Hessian, so.L2, so.TrainBatchSize);
        gradients = new PerExampleGradients(model, task, layers);
        var byName = factors.Layers.ToDictionary(l => l.Name);
        double pcDamping = Options.PreconditionerDamping ?? Options.System.Damping + Options.System.L2;
        var device = model.parameters().First().device;
        pre = layers.Select(l =>
        {
            if (!byName.TryGetValue(l.Name, out var f))
                throw new InfluenceSharpException($"ekfac-astra: the factors have no layer '{l.Name}' (fit them on the same tracked layers)");
            if (f.Strategy is FactorStrategy.Identity)
                throw new InfluenceSharpException("ekfac-astra: the preconditioner needs fitted curvature factors (ekfac, kfac or diagonal), not identity");
            return f.Prepare(pcDamping, ScalarType.Float64, device);
        }).ToList();
        sizes = layers.Select(l => l.NumParams).ToArray();
        PreconditionerDampingUsed = pcDamping;
    }

    public string Name => "ekfac-astra";
    public AstraOptions Options { get; }
    public CurvatureOperator Curvature => curvature;
    public double PreconditionerDampingUsed { get; }
    /// <summary>The last solve's residuals (null before one).</summary>
    public AstraReport? LastReport { get; private set; }
    /// <summary>The Neumann step the solves use: the one given, or the automatic one once estimated.</summary>
    public double? NeumannStepUsed { get; private set; }

    /// <summary>M⁻¹V for rows V [m, P] (float64): the EK-FAC inverse, layer by layer.</summary>
    public Tensor Precondition(Tensor v)
    {
        long m = v.shape[0], off = 0;
        var parts = new List<Tensor>();
        for (int i = 0; i < pre.Count; i++)
        {
            var l = layers[i];
            var block = v.narrow(1, off, sizes[i]).reshape(m, l.Out, l.In);
            parts.Add(pre[i].Apply(block).reshape(m, sizes[i]));
            off += sizes[i];
        }
        return torch.cat(parts, 1);
    }

    /// <summary>(H + λI)⁻¹ approximated for the rows of <paramref name="b"/> [m, P]: EK-FAC, then
    /// <see cref="AstraOptions.Steps"/> preconditioned iterations.</summary>
    public Tensor InverseHvp(Tensor b, string label = "solve")
    {
        var o = Options;
        double damping = o.System.Damping;
        b = b.to(ScalarType.Float64, gradients.Device);
        // The automatic Neumann step is estimated once, before the first solve's steps.
        if (o.Iteration == AstraIteration.Neumann && NeumannStepUsed is null && o.Steps > 0)
            NeumannStepUsed = o.NeumannStep ?? 1 / LargestPreconditionedEigenvalue(Apply, b.device);
        using var bar = ProgressReporter.Start(o.System.Progress, $"ekfac-astra {label}", o.Steps, "step");
        Tensor Apply(Tensor v) => ApplyOn(v, null);
        Tensor ApplyOn(Tensor v, int[]? indices)
        {
            using var dampS = damping.ToScalar();
            return curvature.Apply(v, indices).add_(v, alpha: dampS);
        }
        int n = curvature.TrainCount;
        int? batch = o.NeumannBatchSize is { } nb && nb < n ? nb : null;
        // Each solve draws the same sequence of batches: a query's result does not depend on which
        // other queries were solved before it.
        var rng = new Random(Seeds.Derive(o.System.Seed, 0xBA7C));
        var perm = Enumerable.Range(0, n).ToArray();
        Tensor StepProduct(Tensor v)
        {
            if (batch is not { } size) return Apply(v);
            for (int i = 0; i < size; i++) { int j = rng.Next(i, n); (perm[i], perm[j]) = (perm[j], perm[i]); }
            return ApplyOn(v, perm[..size]);
        }
        var (x, report) = o.Iteration == AstraIteration.Pcg
            ? Pcg(Apply, Precondition, b, o.Steps, o.Tolerance, bar)
            : Neumann(StepProduct, Precondition, b, o.Steps, NeumannStepUsed ?? o.NeumannStep ?? 1.0, o.Tolerance, bar, stochastic: batch is not null);
        LastReport = report;
        return x;
    }

    /// <summary>μ̂ ≈ the largest eigenvalue of M⁻¹A by power iteration from a seeded random vector
    /// (M⁻¹A is similar to the symmetric M^-1/2 A M^-1/2, so its eigenvalues are real and positive).</summary>
    double LargestPreconditionedEigenvalue(Func<Tensor, Tensor> a, Device device)
    {
        var o = Options;
        using var progress = ProgressReporter.Start(o.System.Progress, "ekfac-astra step size (power iteration)", o.PowerIterations, "it");
        using var gen = new TorchSharp.torch.Generator((ulong)Seeds.Derive(o.System.Seed, 0xA57A), device);
        var v = torch.randn(new long[] { 1, sizes.Sum() }, dtype: ScalarType.Float64, device: device, generator: gen);
        v.div_(v.norm());
        double mu = 0;
        for (int k = 0; k < o.PowerIterations; k++)
        {
            using var scope = NewDisposeScope();
            var w = Precondition(a(v));
            mu = w.norm().item<double>();
            if (!(mu > 0) || !double.IsFinite(mu))
                throw new InfluenceSharpException($"ekfac-astra: the preconditioned system's largest eigenvalue came out as {mu:G3}; give --astra-neumann-step X > 0");
            v.Dispose();
            using var muS = mu.ToScalar();
            v = w.div(muS).DetachFromDisposeScope();
            progress?.Update(k + 1, $"largest eigenvalue {mu:G4}");
        }
        v.Dispose();
        progress?.Complete($"largest eigenvalue {mu:G4}: Neumann step {1 / mu:G3}");
        return mu;
    }

    /// <summary>Preconditioned CG on A x = b from x₀ = M⁻¹b; <paramref name="steps"/> iterations at most
    /// (a right-hand side stops once its relative residual is ≤ tol).</summary>
    public static (Tensor X, AstraReport Report) Pcg(Func<Tensor, Tensor> a, Func<Tensor, Tensor> mInv, Tensor b, int steps, double tol,
        ProgressReporter? progress = null)
    {
        long m = b.shape[0];
        var x = mInv(b);
        var history = new List<double[]>();
        if (steps == 0) return (x, new AstraReport(0, Array.Empty<double[]>()));
        using var one = 1.0.ToScalar();
        var bnorm = b.norm(1, false).clamp_min(1e-300);
        var r = b - a(x);
        var z = mInv(r);
        var p = z.clone();
        var rz = (r * z).sum(new long[] { 1 });
        var rel = (r.norm(1, false) / bnorm).cpu().data<double>().ToArray();
        history.Add(rel.ToArray());
        int it = 0;
        while (it < steps && rel.Any(v => v > tol))
        {
            it++;
            using var scope = NewDisposeScope();
            var active = Enumerable.Range(0, (int)m).Where(i => rel[i] > tol).Select(i => (long)i).ToArray();
            var ai = torch.tensor(active, device: b.device);
            var pa = p.index_select(0, ai);
            var apa = a(pa);
            var pap = (pa * apa).sum(new long[] { 1 });
            double minCurv = pap.min().item<double>();
            if (!(minCurv > 0))
                throw new InfluenceSharpException($"ekfac-astra: H + λI is not positive definite (pᵀ(H+λI)p = {minCurv:G3} along a search direction); raise --damping or use --hessian gauss-newton");
            var rza = rz.index_select(0, ai);
            var alpha = (rza / pap).unsqueeze(1);
            var xa = x.index_select(0, ai).add_(alpha * pa, one);
            var ra = r.index_select(0, ai).sub_(alpha * apa);
            var za = mInv(ra);
            var rzNew = (ra * za).sum(new long[] { 1 });
            var pn = za.add((rzNew / rza).unsqueeze(1) * pa, one);
            x.index_copy_(0, ai, xa); r.index_copy_(0, ai, ra); p.index_copy_(0, ai, pn); rz.index_copy_(0, ai, rzNew);
            var relA = (ra.norm(1, false) / bnorm.index_select(0, ai)).cpu().data<double>().ToArray();
            for (int i = 0; i < active.Length; i++) rel[active[i]] = relA[i];
            history.Add(rel.ToArray());
            progress?.Update(it, $"max residual {rel.Max():G3}");
        }
        progress?.Complete($"{it} step(s) after EK-FAC, max residual {(m == 0 ? 0 : rel.Max()):G3} (EK-FAC alone: {(m == 0 ? 0 : history[0].Max()):G3})");
        return (x, new AstraReport(it, history.ToArray()));
    }

    /// <summary>Preconditioned Neumann steps x ← x + η M⁻¹(b − A x) from x₀ = η M⁻¹b. Stops with an
    /// error when a residual grows tenfold (η too large for the preconditioned spectrum). With
    /// <paramref name="stochastic"/>, <paramref name="a"/> is a mini-batch estimate drawn anew at each
    /// call: the residuals reported are those estimates, and no early stop is taken on them.</summary>
    public static (Tensor X, AstraReport Report) Neumann(Func<Tensor, Tensor> a, Func<Tensor, Tensor> mInv, Tensor b, int steps, double eta, double tol,
        ProgressReporter? progress = null, bool stochastic = false)
    {
        using var etaS = eta.ToScalar();
        var x = mInv(b).mul_(etaS);
        var history = new List<double[]>();
        var bnorm = b.norm(1, false).clamp_min(1e-300);
        double first = 0;
        int it = 0;
        for (; it < steps; it++)
        {
            using var scope = NewDisposeScope();
            var r = b - a(x);
            var rel = (r.norm(1, false) / bnorm).cpu().data<double>().ToArray();
            history.Add(rel);
            double worst = rel.Length == 0 ? 0 : rel.Max();
            if (it == 0) first = worst;
            if (!double.IsFinite(worst) || worst > 10 * Math.Max(first, 1e-300))
                throw new InfluenceSharpException($"ekfac-astra: the Neumann steps diverged at step {it} (residual {worst:G3}, EK-FAC's {first:G3}): the step {eta} is too large for this preconditioner; use a smaller --astra-neumann-step, or 0 (preconditioned CG)");
            if (worst <= tol && !stochastic) break;
            x.add_(mInv(r), alpha: etaS);
            progress?.Update(it + 1, $"max residual {worst:G3}");
        }
        progress?.Complete();
        return (x, new AstraReport(it, history.ToArray()));
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var solved = SolvedQueries(queries);
        EachTrainBatch(train, (offset, g) => sink(offset, solved.matmul(g.mT).to(ScalarType.Float32).cpu()));
    }

    /// <summary>Σ_q w_q score(q, i) with the weighted sum of the query gradients solved once. Exact
    /// at step 0 (EK-FAC is linear) and once PCG has converged; with PCG stopped early it is PCG's
    /// approximation for the weighted right-hand side (CG's iterates are not linear in it).</summary>
    public double[] WeightedScores(IDataset queries, double[] weights, IDataset train)
    {
        if (weights.Length != queries.Count)
            throw new InfluenceSharpException($"ekfac-astra: {weights.Length} weights for {queries.Count} queries");
        using var scope = NewDisposeScope();
        var sum = torch.zeros(1, curvature.NumParams, dtype: ScalarType.Float64, device: gradients.Device);
        gradients.ForEachBatch(queries, Options.System.QueryBatchSize, true, (off, g) =>
        {
            using var w = torch.tensor(weights.AsSpan(off, (int)g.shape[0]).ToArray(), new long[] { 1, g.shape[0] }, ScalarType.Float64, gradients.Device);
            sum.add_(w.matmul(g));
        });
        var x = InverseHvp(sum, "weighted queries");
        var result = new double[train.Count];
        EachTrainBatch(train, (offset, g) => x.matmul(g.mT).reshape(-1).cpu().data<double>().ToArray().CopyTo(result, offset));
        return result;
    }

    public double[] SelfInfluence(IDataset train)
    {
        var result = new double[train.Count];
        EachTrainBatch(train, (offset, g) =>
        {
            var x = InverseHvp(g, "self-influence");
            (x * g).sum(new long[] { 1 }).cpu().data<double>().ToArray().CopyTo(result, offset);
        });
        return result;
    }

    private Tensor SolvedQueries(IDataset queries)
    {
        if (cached is { } c && ReferenceEquals(c.Queries, queries) && c.Count == queries.Count) return c.Solved;
        cached?.Solved.Dispose();
        using var scope = NewDisposeScope();
        var g = gradients.All(queries, Options.System.QueryBatchSize, query: true);
        var reports = new List<AstraReport>();
        var solved = HvpSolvers.SolveInBlocks(g, Options.QueryBlockSize, InverseHvp, () => reports.Add(LastReport!)).DetachFromDisposeScope();
        LastReport = AstraReport.Concat(reports);
        cached = (queries, queries.Count, solved);
        return solved;
    }

    /// <summary>Per-example training-loss gradients [b, P] float64, batch by batch.</summary>
    private void EachTrainBatch(IDataset train, Action<int, Tensor> body)
    {
        using var bar = ProgressReporter.Start(Options.System.Progress, "ekfac-astra scores", train.Count);
        gradients.ForEachBatch(train, Options.System.TrainBatchSize, false, (off, g) => { body(off, g); bar?.Update(off + g.shape[0]); });
    }

    public void Dispose()
    {
        foreach (var p in pre) p.Dispose();
        cached?.Solved.Dispose();
    }
}
