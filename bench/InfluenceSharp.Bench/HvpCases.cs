using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
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
    /// </summary>
    public static IEnumerable<BenchResult> LdsSolvers(BenchContext c)
    {
        var log = Console.Error;
        var split = DataSource.LoadEmbedded();
        int n = 5000, nq = 500;
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
        foreach (var (name, make) in Methods(model, task, train))
        {
            sw.Restart();
            var method = make();
            var scores = method.PairwiseMatrix(queries, train).to(ScalarType.Float64);
            double secs = sw.Elapsed.TotalSeconds;
            var lds = Lds.Score(scores, masks, targets);
            reference ??= scores;
            double rho = Oracles.SpearmanFlat(scores, reference);
            string extra = method is HvpInfluence h && h.LastCgReport is { } r ? $", CG {r.Iterations} it, max residual {r.MaxResidual:G2}" : "";
            log.WriteLine($"{name}: LDS {lds.Mean:F3} ± {lds.StandardError:F3}, {secs:F1} s, Spearman to if-explicit {rho:F3}{extra}");
            yield return new BenchResult("lds-solvers", name, n, secs, 0, Measure.PeakRssMiB(), $"LDS {lds.Mean:F3} ± {lds.StandardError:F3}; Spearman to if-explicit {rho:F3}{extra}");
            (method as IDisposable)?.Dispose();
        }
    }

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
        foreach (double? d in new double?[] { L2, null })
            yield return ($"ekfac (damping {(d is null ? "heuristic" : d.Value.ToString("G2"))})", () =>
            {
                var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 1000 }).Fit(train)!;
                return new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = d, TrainBatchSize = 1000 });
            });
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
    /// <summary>Spearman correlation of two score matrices, flattened.</summary>
    public static double SpearmanFlat(Tensor a, Tensor b) =>
        Ranking.Spearman(a.flatten().cpu().data<double>().ToArray(), b.flatten().to(ScalarType.Float64).cpu().data<double>().ToArray());
}
