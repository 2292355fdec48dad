using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Astra;
using InfluenceSharp.Methods.DataInf;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.KnnShapley;
using InfluenceSharp.Methods.Representer;
using InfluenceSharp.Methods.RelatIF;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>The Hessian-vector-product influence functions: LDS on a converged logistic regression
/// (lds-solvers); their cost per solver on the Mlp and SmallCnn is in HvpCostCases (hvp-solvers).</summary>
public static class HvpCases
{
    const double L2 = 1e-3;

    /// <summary>
    /// LDS of every IF solver and EK-FAC on multinomial logistic regression (784 → 10, float64) on the
    /// first 5,000 embedded Fashion-MNIST training images, objective mean cross-entropy + (L2/2)‖θ‖²
    /// (weights and biases), L2 = 1e-3, trained to convergence by full-batch L-BFGS (gradient max-norm
    /// ≤ 1e-7); 500 test queries, margin target, 100 random half subsets each retrained the same way
    /// (warm-started from the full model: the objective is strictly convex, so the optimum is the same).
    /// Spearman to if-explicit: per query over the training examples, mean ± s.e. over queries (and,
    /// as before, over the flattened matrices). Scaled down by LDS_TRAIN (training images), LDS_QUERIES,
    /// LDS_SUBSETS, LDS_TOL; LDS_METHODS (comma-separated name prefixes) picks methods; if-explicit,
    /// the Spearman reference, runs whenever it is listed first in the case.
    /// </summary>
    public static IEnumerable<BenchResult> LdsSolvers(BenchContext c)
    {
        var log = Console.Error;
        var split = DataSource.LoadEmbedded();
        int n = EnvInt("LDS_TRAIN", 5000), nq = EnvInt("LDS_QUERIES", 500);
        var only = Environment.GetEnvironmentVariable("LDS_METHODS")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // LDS_SUBSETS (default 100) and LDS_TOL (gradient max-norm at which a subset's retraining stops, default 1e-7).
        int m = int.TryParse(Environment.GetEnvironmentVariable("LDS_SUBSETS"), out var ms) ? ms : 100;
        double tol = double.TryParse(Environment.GetEnvironmentVariable("LDS_TOL"), System.Globalization.CultureInfo.InvariantCulture, out var ts) ? ts : 1e-7;
        var trainIdx = Enumerable.Range(0, n).ToArray();
        var x = split.Train.Inputs(trainIdx).flatten(1).to(ScalarType.Float64);
        var y = split.Train.Targets(trainIdx);
        var qIdx = Enumerable.Range(0, nq).ToArray();
        var xq = split.Test.Inputs(qIdx).flatten(1).to(ScalarType.Float64);
        var yq = split.Test.Targets(qIdx);
        var train = new TensorPairDataset(x, y);
        var queries = new TensorPairDataset(xq, yq);

        var sw = Stopwatch.StartNew();
        var (w, it, gmax) = SoftmaxLbfgs.Fit(x, y, 10, L2, null);
        log.WriteLine($"LR: {n} training images, {nq} queries, {m} subsets, retraining tolerance {tol:G2}");
        log.WriteLine($"full model: {it} L-BFGS iterations, max |grad| {gmax:G2}, train acc {Accuracy(x, y, w):P1}, test acc {Accuracy(xq, yq, w):P1} ({sw.Elapsed.TotalSeconds:F1} s)");

        // Retrain on the subsets.
        var masks = LdsSubsets.Masks(n, m, 0.5, seed: 0);
        var targets = new double[m, nq];
        sw.Restart();
        int worstIt = 0; double worstG = 0;
        for (int j = 0; j < m; j++)
        {
            using var scope = NewDisposeScope();
            var idx = torch.tensor(LdsSubsets.Indices(masks[j]).Select(i => (long)i).ToArray());
            var (wj, itj, gj) = SoftmaxLbfgs.Fit(x.index_select(0, idx), y.index_select(0, idx), 10, L2, w, tol);
            worstIt = Math.Max(worstIt, itj); worstG = Math.Max(worstG, gj);
            var margins = ClassificationTask.Margins(SoftmaxLbfgs.Logits(xq, wj), yq).data<double>().ToArray();
            for (int q = 0; q < nq; q++) targets[j, q] = margins[q];
        }
        log.WriteLine($"retrained {m} subsets in {sw.Elapsed.TotalSeconds:F0} s (at most {worstIt} iterations, max |grad| {worstG:G2})");

        var model = new LogisticRegression(784, 10).to(ScalarType.Float64);
        SoftmaxLbfgs.Load(model, w);
        model.eval();
        var task = new ClassificationTask(QueryMeasurement.Margin);

        Tensor? reference = null;
        // LDS_METHODS also sets the order (the reference first, slow methods last).
        var all = Methods(model, task, train).ToList();
        var chosen = only is null ? all : only.SelectMany(o => all.Where(m => m.Item1.StartsWith(o, StringComparison.Ordinal))).Distinct().ToList();
        foreach (var (name, make) in chosen)
        {
            sw.Restart();
            var method = make();
            var scores = method.PairwiseMatrix(queries, train).to(ScalarType.Float64);
            double secs = sw.Elapsed.TotalSeconds;
            var lds = Lds.Score(scores, masks, targets);
            if (name == "if-explicit") reference = scores;
            string rho = "n/a (if-explicit not run)";
            if (reference is not null)
            {
                var (mean, se) = Oracles.SpearmanPerQuery(scores, reference);
                rho = $"{mean:F3} ± {se:F3} per query, {Oracles.SpearmanFlat(scores, reference):F3} flattened";
            }
            string extra = method switch
            {
                HvpInfluence { LastCgReport: { } r } => $", CG {r.Iterations} it, max residual {r.MaxResidual:G2}",
                HvpInfluence { Solver: HvpSolver.Lissa } h => $", {h.TuneLissa().Describe(h.Options)}",
                EkfacAstra { LastReport: { } a } => $", {a.Steps} PCG steps, max residual {a.MaxResidual:G2}",
                _ => "",
            };
            log.WriteLine($"{name}: LDS {lds.Mean:F3} ± {lds.StandardError:F3}, {secs:F1} s, Spearman to if-explicit {rho}{extra}");
            yield return new BenchResult("lds-solvers", name, n, secs, 0, Measure.PeakRssMiB(), $"LDS {lds.Mean:F3} ± {lds.StandardError:F3}; Spearman to if-explicit {rho}{extra}");
            if (!ReferenceEquals(scores, reference)) scores.Dispose();
            (method as IDisposable)?.Dispose();
        }
    }

    static int EnvInt(string name, int fallback) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), out var v) && v > 0 ? v : fallback;

    static IEnumerable<(string, Func<IAttributionMethod>)> Methods(LogisticRegression model, ClassificationTask task, IDataset train)
    {
        // λ = 1e-6 on top of the L2 term that is part of the objective (CG needs λ > 0 with the true Hessian).
        var o = new HvpSolverOptions { L2 = L2, Damping = 1e-6, TrainBatchSize = 5000, QueryBatchSize = 500 };
        yield return ("if-explicit", () => new HvpInfluence(model, task, train, HvpSolver.Explicit, o));
        yield return ("if-cg (tol 1e-3, <= 100 it)", () => new HvpInfluence(model, task, train, HvpSolver.Cg, o with { CgTolerance = 1e-3, CgMaxIterations = 100 }));
        yield return ("if-cg (tol 1e-2, <= 30 it)", () => new HvpInfluence(model, task, train, HvpSolver.Cg, o with { CgTolerance = 1e-2, CgMaxIterations = 30 }));
        yield return ("if-arnoldi (200 it, top 100)", () => new HvpInfluence(model, task, train, HvpSolver.Arnoldi, o with { ArnoldiIterations = 200, ArnoldiTopK = 100 }));
        yield return ("if-arnoldi (400 it, top 300)", () => new HvpInfluence(model, task, train, HvpSolver.Arnoldi, o with { ArnoldiIterations = 400, ArnoldiTopK = 300 }));
        yield return ("if-lissa (depth 300, scale 50, batch 500)", () => new HvpInfluence(model, task, train, HvpSolver.Lissa, o with { LissaDepth = 300, LissaScale = 50, LissaBatchSize = 500 }));
        // Scale, batch and depth tuned (depth capped at 5,000; LDS_LISSA_CAP raises the cap).
        int cap = EnvInt("LDS_LISSA_CAP", 5000);
        yield return ($"if-lissa (tuned, depth <= {cap})", () => new HvpInfluence(model, task, train, HvpSolver.Lissa, o with { LissaMaxAutoDepth = cap }));
        // EK-FAC-preconditioned CG on H + λI (for LR the Gauss-Newton matrix is H); the CLI's 10 steps.
        yield return ("ekfac-astra (10 PCG steps)", () =>
        {
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 1000 }).Fit(train)!;
            return new EkfacAstra(model, task, train, factors, new AstraOptions { System = o with { Hessian = HessianKind.GaussNewton }, Steps = 10 });
        });
        foreach (double? d in new double?[] { L2, null })
            yield return ($"ekfac (damping {(d is null ? "heuristic" : d.Value.ToString("G2"))})", () =>
            {
                var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 1000 }).Fit(train)!;
                return new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = d, TrainBatchSize = 1000 });
            });
        yield return ("relatif (over ekfac, damping 1e-3)", () =>
        {
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 1000 }).Fit(train)!;
            return new RelatIF(new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = L2, TrainBatchSize = 1000 }));
        });
        yield return ("datainf", () => new DataInf(model, task, new DataInfOptions { TrainBatchSize = 1000 }));
        yield return ("rps (L2 0.003)", () => new RepresenterPoints(model, new RepresenterOptions { TrainBatchSize = 1000 }));
        yield return ("knn-shapley (K = 5, pixels)", () => new KnnShapley(model, new KnnShapleyOptions { TrainBatchSize = 1000 }));
        yield return ("identity (graddot)", () =>
        {
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Identity, TrainBatchSize = 1000 }).Fit(train)!;
            return new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = 0, TrainBatchSize = 1000 });
        });
    }

    static double Accuracy(Tensor x, Tensor y, Tensor w) =>
        SoftmaxLbfgs.Logits(x, w).argmax(1).eq(y).to(ScalarType.Float64).mean().item<double>();
}

/// <summary>Full-batch L-BFGS (two-loop recursion, Armijo backtracking) for multinomial logistic
/// regression in float64 with closed-form gradients: f(W) = mean CE(X W + b) + (L2/2)‖[W; b]‖².</summary>
public static class SoftmaxLbfgs
{
    /// <summary>Parameters as one [In+1, K] matrix (last row = bias).</summary>
    public static Tensor Logits(Tensor x, Tensor w) => x.matmul(w.narrow(0, 0, x.shape[1])) + w[-1];

    static (double F, Tensor G) Objective(Tensor x, Tensor y1h, Tensor w, double l2)
    {
        var z = Logits(x, w);
        var lsm = z.log_softmax(1);
        double f = -(lsm * y1h).sum().item<double>() / x.shape[0] + 0.5 * l2 * w.square().sum().item<double>();
        var d = (lsm.exp() - y1h) / x.shape[0];
        var g = torch.cat(new[] { x.mT.matmul(d), d.sum(new long[] { 0 }).unsqueeze(0) }, 0) + l2 * w;
        return (f, g);
    }

    public static (Tensor W, int Iterations, double MaxGrad) Fit(Tensor x, Tensor y, int classes, double l2, Tensor? init, double tol = 1e-7, int maxIter = 3000, int history = 20)
    {
        var y1h = nn.functional.one_hot(y, classes).to(ScalarType.Float64);
        using var outer = NewDisposeScope();
        var w = init?.clone() ?? torch.zeros(x.shape[1] + 1, classes, dtype: ScalarType.Float64);
        var (f, g) = Objective(x, y1h, w, l2);
        var ss = new List<Tensor>(); var ys = new List<Tensor>();
        int it = 0;
        double gmax = g.abs().max().item<double>();
        while (it < maxIter && gmax > tol)
        {
            it++;
            using var scope = NewDisposeScope();
            // Two-loop recursion: d = −H_k g.
            var q = g.clone();
            var alphas = new double[ss.Count];
            for (int i = ss.Count - 1; i >= 0; i--)
            {
                double rho = 1 / (ys[i] * ss[i]).sum().item<double>();
                alphas[i] = rho * (ss[i] * q).sum().item<double>();
                q.sub_(ys[i] * alphas[i]);
            }
            if (ss.Count > 0) q.mul_((ss[^1] * ys[^1]).sum().item<double>() / ys[^1].square().sum().item<double>());
            for (int i = 0; i < ss.Count; i++)
            {
                double rho = 1 / (ys[i] * ss[i]).sum().item<double>();
                double beta = rho * (ys[i] * q).sum().item<double>();
                q.add_(ss[i] * (alphas[i] - beta));
            }
            var d = -q;
            double slope = (g * d).sum().item<double>();
            if (slope >= 0) { d = -g; slope = -g.square().sum().item<double>(); ss.Clear(); ys.Clear(); }
            double step = ss.Count == 0 && it == 1 ? Math.Min(1, 1 / Math.Sqrt(-slope)) : 1;
            Tensor wn; double fn; Tensor gn;
            while (true)
            {
                wn = w + step * d;
                (fn, gn) = Objective(x, y1h, wn, l2);
                if (fn <= f + 1e-4 * step * slope || step < 1e-12) break;
                step *= 0.5;
            }
            var s = wn - w; var yv = gn - g;
            if ((s * yv).sum().item<double>() > 1e-12)
            {
                ss.Add(s.DetachFromDisposeScope()); ys.Add(yv.DetachFromDisposeScope());
                if (ss.Count > history) { ss[0].Dispose(); ys[0].Dispose(); ss.RemoveAt(0); ys.RemoveAt(0); }
            }
            w.Dispose(); g.Dispose();
            w = wn.DetachFromDisposeScope(); f = fn; g = gn.DetachFromDisposeScope();
            gmax = g.abs().max().item<double>();
        }
        foreach (var t in ss.Concat(ys)) t.Dispose();
        g.Dispose();
        return (w, it, gmax);
    }

    public static void Load(LogisticRegression model, Tensor w)
    {
        using var _ = torch.no_grad();
        var ps = model.parameters().ToList();
        var weight = ps.First(p => p.dim() == 2); var bias = ps.First(p => p.dim() == 1);
        weight.copy_(w.narrow(0, 0, w.shape[0] - 1).mT);
        bias.copy_(w[-1]);
    }
}

internal static class Oracles
{
    /// <summary>Mean ± standard error over queries (rows) of the Spearman correlation of two score rows.</summary>
    public static (double Mean, double StandardError) SpearmanPerQuery(Tensor a, Tensor b)
    {
        var x = a.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var y = b.to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        int nq = (int)a.shape[0], n = (int)a.shape[1];
        var rho = new double[nq];
        // A constant row has no correlation: counted as 0, as the LDS counts an undefined query.
        for (int q = 0; q < nq; q++) { double r = Ranking.Spearman(x.AsSpan(q * n, n), y.AsSpan(q * n, n)); rho[q] = double.IsNaN(r) ? 0 : r; }
        double mean = rho.Average();
        double sd = nq > 1 ? Math.Sqrt(rho.Sum(r => (r - mean) * (r - mean)) / (nq - 1)) : 0;
        return (mean, sd / Math.Sqrt(nq));
    }

    /// <summary>Spearman correlation of two score matrices, flattened.</summary>
    public static double SpearmanFlat(Tensor a, Tensor b) =>
        Ranking.Spearman(a.flatten().cpu().data<double>().ToArray(), b.flatten().to(ScalarType.Float64).cpu().data<double>().ToArray());
}
