using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// Influence functions through Hessian-vector products (dattri's and Captum's IF family):
/// score(q, z) = ∇f(q)ᵀ (H + λI)⁻¹ ∇L(z) with the true Hessian or the Gauss-Newton matrix of the
/// mean training loss over the tracked layers' parameters (see <see cref="HvpSolverOptions"/>), no
/// Kronecker or block-diagonal approximation. Solvers:
/// <list type="bullet">
/// <item>if-explicit: H formed column by column (P HVPs), eigendecomposed in float64; refuses more
/// than <see cref="HvpSolverOptions.MaxExplicitParameters"/> tracked parameters.</item>
/// <item>if-cg: batched conjugate gradient over all query gradients at once.</item>
/// <item>if-lissa: LiSSA's stochastic recursion.</item>
/// <item>if-arnoldi: the top-k eigenpairs from Arnoldi; scores Σ_i (g_q·u_i)(g_z·u_i)/(λ_i + λ).</item>
/// </list>
/// The query side (H⁻¹∇f(q) for the query set) is solved once per query set and cached in the
/// instance; training gradients are streamed in batches (per-example gradients of the tracked
/// layers, as the other methods). Self-influence g_zᵀ(H+λI)⁻¹g_z is exact and cheap for explicit
/// and Arnoldi; for CG and LiSSA it needs a solve per training example, done batched (one batched
/// solve per batch of <see cref="HvpSolverOptions.TrainBatchSize"/> examples) — correct but as costly
/// as scoring that many queries.
/// </summary>
public sealed class HvpInfluence : IAttributionMethod, IDisposable
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly IAttributionTask task;
    private readonly List<TrackedLayer> layers;
    private readonly Profiler profiler;
    private Tensor? inverse;                      // explicit: (H + λI)⁻¹ [P, P]
    private (Tensor Values, Tensor Vectors)? eigen;
    private (IDataset Queries, int Count, Tensor Solved)? cachedQueries;

    /// <summary>An HVP influence function of <paramref name="model"/> whose curvature averages over
    /// <paramref name="hessianData"/> (the training set), solved with <paramref name="solver"/>.
    /// Validates the settings (<see cref="HvpSolverOptions.Validate"/>).</summary>
    public HvpInfluence(nn.Module<Tensor, Tensor> model, IAttributionTask task, IDataset hessianData, HvpSolver solver,
        HvpSolverOptions? options = null, Profiler? profiler = null)
    {
        this.model = model; this.task = task; Solver = solver; Options = options ?? new HvpSolverOptions();
        this.profiler = profiler ?? new Profiler();
        Options.Validate(solver);
        layers = TrackedLayer.Find(model, Options.Layers);
        Curvature = new CurvatureOperator(model, task, layers, hessianData, Options.Hessian, Options.L2, Options.TrainBatchSize);
        if (solver == HvpSolver.Explicit && Curvature.NumParams > Options.MaxExplicitParameters)
            throw new InfluenceSharpException($"if-explicit: the tracked layers have {Curvature.NumParams:N0} parameters, more than {Options.MaxExplicitParameters:N0} (it would form a {Curvature.NumParams:N0} x {Curvature.NumParams:N0} Hessian); use if-cg or if-arnoldi, or track fewer layers with --layers");
    }

    public string Name => "if-" + Solver.ToString().ToLowerInvariant();
    public HvpSolver Solver { get; }
    public HvpSolverOptions Options { get; }
    public CurvatureOperator Curvature { get; }
    public IReadOnlyList<TrackedLayer> Layers => layers;
    /// <summary>The last CG solve's iterations and residuals (null before one, or for other solvers).</summary>
    public CgReport? LastCgReport { get; private set; }

    private Device Device => model.parameters().First().device;

    /// <summary>(H + λI)⁻¹ applied to the rows of <paramref name="b"/> [m, P] (float64), with this
    /// method's solver.</summary>
    public Tensor InverseHvp(Tensor b, string label = "solve")
    {
        b = b.to(ScalarType.Float64, Device);
        switch (Solver)
        {
            case HvpSolver.Explicit:
                return b.matmul(Inverse());
            case HvpSolver.Arnoldi:
            {
                var (vals, vecs) = Eigen();
                using var dampS = Options.Damping.ToScalar();
                return b.matmul(vecs).div_(vals.add(dampS)).matmul(vecs.mT);
            }
            case HvpSolver.Cg:
            {
                using var bar = ProgressReporter.Start(Options.Progress, $"if-cg {label}", Options.CgMaxIterations, "it");
                var (x, report) = HvpSolvers.ConjugateGradient(v => Curvature.Apply(v), b, Options.Damping, Options.CgTolerance, Options.CgMaxIterations, bar);
                LastCgReport = report;
                return x;
            }
            default:
            {
                int n = Curvature.TrainCount;
                var tuning = TuneLissa();
                int? bs = tuning.BatchSize < n ? tuning.BatchSize : null;
                var rng = new Random(Options.Seed);
                var perm = Enumerable.Range(0, n).ToArray();
                Tensor OnBatch(Tensor v, int rep, int step)
                {
                    if (bs is not { } size) return Curvature.Apply(v);
                    for (int i = 0; i < size; i++) { int j = rng.Next(i, n); (perm[i], perm[j]) = (perm[j], perm[i]); }
                    return Curvature.Apply(v, perm[..size]);
                }
                using var bar = ProgressReporter.Start(Options.Progress, $"if-lissa {label}", (long)tuning.Depth * Options.LissaRepetitions, "step");
                return HvpSolvers.Lissa(OnBatch, b, Options.Damping, tuning.Scale, tuning.Depth, Options.LissaRepetitions, bar);
            }
        }
    }

    private LissaTuning? lissaTuning;

    /// <summary>if-lissa's scale, depth and batch: the options given, the others tuned (Klochkov and Liu
    /// 2024) from a Lanczos estimate of the curvature's largest eigenvalue λ_max (20 Arnoldi
    /// iterations) and a Hutchinson estimate of its trace (8 Rademacher vectors), with μ = λ + L2 the
    /// smallest eigenvalue of H + λI for a positive semi-definite loss curvature:
    /// scale s = 1.5 (λ_max + λ) (above every minibatch's largest eigenvalue in practice),
    /// batch B = 4 tr(H_loss)/λ_max(H_loss) (the effective rank, clamped to [32, n]),
    /// depth J = ⌈(s/μ) ln 100⌉ (the slowest direction's error down to 1%), at most
    /// <see cref="HvpSolverOptions.LissaMaxAutoDepth"/>. Estimated once per instance, stated in the progress line.</summary>
    public LissaTuning TuneLissa()
    {
        if (lissaTuning is not null) return lissaTuning;
        var o = Options;
        int n = Curvature.TrainCount;
        double lmax = double.NaN, trace = double.NaN;
        using var bar = ProgressReporter.Start(o.Progress, "if-lissa tuning", 1, "step");
        if (o.LissaScale is null || o.LissaDepth is null || o.LissaBatchSize is null)
        {
            using var scope = NewDisposeScope();
            var (vals, _) = HvpSolvers.Arnoldi(v => Curvature.Apply(v), Curvature.NumParams, 20, 1, o.Seed, Device);
            lmax = vals.cpu().data<double>()[0];
            trace = HutchinsonTrace(8, o.Seed + 1);
        }
        double scale = o.LissaScale ?? 1.5 * (lmax + o.Damping);
        double mu = o.Damping + o.L2;
        int needed = mu > 0 ? (int)Math.Min(int.MaxValue, Math.Ceiling(scale / mu * Math.Log(100))) : int.MaxValue;
        int depth = o.LissaDepth ?? Math.Min(needed, o.LissaMaxAutoDepth);
        double lossMax = lmax - o.L2, lossTrace = trace - o.L2 * Curvature.NumParams;
        int batch = o.LissaBatchSize ?? (int)Math.Clamp(Math.Ceiling(4 * Math.Max(lossTrace, 0) / Math.Max(lossMax, 1e-300)), Math.Min(32, n), n);
        lissaTuning = new LissaTuning(lmax, trace, scale, depth, batch, needed);
        if (!(scale > 0) || !double.IsFinite(scale))
            throw new InfluenceSharpException($"if-lissa: the tuned scale is {scale:G3} (largest eigenvalue estimate {lmax:G3}); give --lissa-scale");
        bar?.Complete(lissaTuning.Describe(o));
        return lissaTuning;
    }

    /// <summary>Hutchinson's estimate of tr(curvature) from <paramref name="probes"/> Rademacher vectors (one batched product).</summary>
    public double HutchinsonTrace(int probes, int seed)
    {
        using var scope = NewDisposeScope();
        var gen = new Generator((ulong)seed);
        var z = torch.randint(0, 2, new long[] { probes, Curvature.NumParams }, generator: gen).to(ScalarType.Float64).mul_(2).sub_(1).to(Device);
        return (Curvature.Apply(z) * z).sum().item<double>() / probes;
    }

    /// <summary>if-arnoldi: an upper bound on the fraction of tr((H + λI)⁻¹) that the kept eigenpairs
    /// carry: Σ_kept 1/(λ_i + λ) over that plus the least the dropped P − k eigenvalues can carry given
    /// their sum (tr(H) by Hutchinson minus the kept ones; by convexity of 1/x). Null before the eigenpairs exist.</summary>
    public double? ArnoldiKeptFraction { get; private set; }

    /// <summary>if-explicit: the curvature matrix itself [P, P] float64 (symmetrised), without damping.</summary>
    public Tensor CurvatureMatrix()
    {
        long p = Curvature.NumParams;
        using var bar = ProgressReporter.Start(Options.Progress, "if-explicit Hessian columns", p, "col");
        var h = torch.empty(p, p, dtype: ScalarType.Float64, device: Device);
        const long chunk = 256;
        for (long c = 0; c < p; c += chunk)
        {
            using var scope = NewDisposeScope();
            long w = Math.Min(chunk, p - c);
            var eye = torch.zeros(w, p, dtype: ScalarType.Float64, device: Device);
            eye.narrow(1, c, w).copy_(torch.eye(w, dtype: ScalarType.Float64, device: Device));
            h.narrow(0, c, w).copy_(Curvature.Apply(eye));
            bar?.Update(c + w);
        }
        using var one = 1.0.ToScalar();
        using var two = 2.0.ToScalar();
        return h.add(h.mT, one).div_(two);
    }

    private Tensor Inverse()
    {
        if (inverse is not null) return inverse;
        using (profiler.Stage("Explicit Hessian"))
        using (var scope = NewDisposeScope())
        {
            var h = CurvatureMatrix();
            var (vals, vecs) = torch.linalg.eigh(h);
            using var dampS = Options.Damping.ToScalar();
            var damped = vals.add(dampS);
            double min = damped.min().item<double>(), max = damped.max().item<double>();
            if (!(min > 1e-12 * Math.Max(Math.Abs(max), 1e-300)))
                throw new InfluenceSharpException($"if-explicit: H + λI is not positive definite (smallest eigenvalue {min:G3}, largest {max:G3}); raise --damping above {Math.Max(0, -(min - Options.Damping)):G3} or use --hessian gauss-newton");
            inverse = (vecs / damped).matmul(vecs.mT).DetachFromDisposeScope();
        }
        return inverse;
    }

    private (Tensor Values, Tensor Vectors) Eigen()
    {
        if (eigen is { } e) return e;
        using (profiler.Stage("Arnoldi"))
        {
            using var bar = ProgressReporter.Start(Options.Progress, "if-arnoldi iterations", Options.ArnoldiIterations, "it");
            var (vals, vecs) = HvpSolvers.Arnoldi(v => Curvature.Apply(v), Curvature.NumParams, Options.ArnoldiIterations, Options.ArnoldiTopK, Options.Seed, Device, bar);
            using var dampS = Options.Damping.ToScalar();
            double min = vals.add(dampS).min().item<double>();
            if (!(min > 0))
                throw new InfluenceSharpException($"if-arnoldi: a kept eigenvalue of H + λI is {min:G3} (not positive); raise --damping or use --hessian gauss-newton");
            eigen = (vals.DetachFromDisposeScope(), vecs.DetachFromDisposeScope());
            var kept = vals.cpu().data<double>().ToArray();
            long dropped = Curvature.NumParams - kept.Length;
            double keptInv = kept.Sum(v => 1 / (v + Options.Damping));
            double droppedMin = 0;
            if (dropped > 0)
            {
                double meanDropped = Math.Max(0, (HutchinsonTrace(8, Options.Seed + 1) - kept.Sum()) / dropped);
                droppedMin = dropped / (meanDropped + Options.Damping);
            }
            ArnoldiKeptFraction = keptInv / (keptInv + droppedMin);
            string note = $"kept {kept.Length} of {Curvature.NumParams} eigenpairs: at most {100 * ArnoldiKeptFraction:G3}% of tr((H+λI)⁻¹)";
            if (ArnoldiKeptFraction < 0.5)
                note += $"; WARNING: with damping {Options.Damping:G3} the dropped directions carry most of H⁻¹ (raise --damping or --arnoldi-topk, or use if-cg)";
            using (var spectrum = ProgressReporter.Start(Options.Progress, "if-arnoldi spectrum", 1, "step")) spectrum?.Complete(note);
            return eigen.Value;
        }
    }

    /// <summary>The eigenvalues Arnoldi kept (largest first); computes them if needed.</summary>
    public double[] ArnoldiEigenvalues() => Eigen().Values.cpu().data<double>().ToArray();

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var solved = SolvedQueries(queries);
        ForEachTrainBatch(train, "Compute Pairwise Score", "pairwise scores", (offset, g) =>
            sink(offset, solved.matmul(g.mT).to(ScalarType.Float32).cpu()));
    }

    public double[] SelfInfluence(IDataset train)
    {
        var result = new double[train.Count];
        ForEachTrainBatch(train, "Compute Self-Influence Score", "self-influence", (offset, g) =>
        {
            var x = InverseHvp(g, "self-influence");
            (x * g).sum(new long[] { 1 }).cpu().data<double>().ToArray().CopyTo(result, offset);
        });
        return result;
    }

    /// <summary>Per-example gradients [n, P] float64 of the query measurement (queries) or the training loss.</summary>
    public Tensor Gradients(IDataset data, bool query)
    {
        var rows = new List<Tensor>();
        int bs = query ? Options.QueryBatchSize : Options.TrainBatchSize;
        EachBatch(data, bs, query, (_, g) => rows.Add(g.MoveToOuterDisposeScope()));
        var all = rows.Count == 0 ? torch.zeros(0, Curvature.NumParams, dtype: ScalarType.Float64) : torch.cat(rows, 0);
        foreach (var r in rows) r.Dispose();
        return all;
    }

    private Tensor SolvedQueries(IDataset queries)
    {
        if (cachedQueries is { } c && ReferenceEquals(c.Queries, queries) && c.Count == queries.Count) return c.Solved;
        cachedQueries?.Solved.Dispose();
        using (profiler.Stage("Precondition Queries"))
        using (var scope = NewDisposeScope())
        {
            var g = Gradients(queries, query: true);
            var reports = new List<CgReport>();
            var solved = HvpSolvers.SolveInBlocks(g, Options.QueryBlockSize, InverseHvp,
                () => { if (Solver == HvpSolver.Cg) reports.Add(LastCgReport!); }).DetachFromDisposeScope();
            if (reports.Count > 0) LastCgReport = CgReport.Concat(reports);
            cachedQueries = (queries, queries.Count, solved);
            return solved;
        }
    }

    private void ForEachTrainBatch(IDataset train, string stage, string label, Action<int, Tensor> body)
    {
        using var bar = ProgressReporter.Start(Options.Progress, label, train.Count);
        using (profiler.Stage(stage))
            EachBatch(train, Options.TrainBatchSize, false, (off, g) => { body(off, g); bar?.Update(off + g.shape[0]); });
    }

    private void EachBatch(IDataset data, int batchSize, bool query, Action<int, Tensor> body) =>
        new PerExampleGradients(model, task, layers).ForEachBatch(data, batchSize, query, body);

    public void Dispose()
    {
        inverse?.Dispose();
        if (eigen is { } e) { e.Values.Dispose(); e.Vectors.Dispose(); }
        cachedQueries?.Solved.Dispose();
    }
}

/// <summary>if-lissa's settings as used, with the estimates behind the tuned ones (NaN when every
/// setting was given): λ_max and trace of the curvature (L2 included), and the depth the slowest
/// direction needs for 1% error.</summary>
public sealed record LissaTuning(double LambdaMax, double Trace, double Scale, int Depth, int BatchSize, int NeededDepth)
{
    public string Describe(HvpSolverOptions o)
    {
        string Tag(bool given) => given ? "given" : "tuned";
        var s = $"scale {Scale:G3} ({Tag(o.LissaScale is not null)}), batch {BatchSize} ({Tag(o.LissaBatchSize is not null)}), depth {Depth} ({Tag(o.LissaDepth is not null)})";
        if (double.IsFinite(LambdaMax)) s += $" from λ_max ≈ {LambdaMax:G3}, tr ≈ {Trace:G3}";
        if (o.LissaDepth is null && Depth < NeededDepth) s += $"; 1% accuracy would need depth {(NeededDepth == int.MaxValue ? "∞ (no damping)" : NeededDepth.ToString())}";
        return s;
    }
}
