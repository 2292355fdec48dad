using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>Hessian-vector-product influence functions against float64 oracles: the Hessian by central
/// finite differences of backward gradients, the Gauss-Newton matrix as Jᵀ H_out J from per-example
/// logit Jacobians, inverses by hand.</summary>
public class HvpInfluenceTests
{

    /// <summary>The gradient of the mean training loss, flattened in the [Out, In] layout.</summary>
    static Tensor MeanGradient(nn.Module<Tensor, Tensor> model, IReadOnlyList<TrackedLayer> layers, IDataset data, IAttributionTask task)
    {
        model.zero_grad();
        var all = Enumerable.Range(0, data.Count).ToArray();
        (task.TrainLoss(model.forward(data.Inputs(all)), data.Targets(all)) / data.Count).backward();
        return torch.cat(layers.Select(Oracles.FlatGrad).ToArray());
    }

    /// <summary>Element j of the flattened [Out, In] layout as (parameter, flat index in it).</summary>
    static (Tensor P, long I) Element(IReadOnlyList<TrackedLayer> layers, long j)
    {
        foreach (var l in layers)
        {
            if (j >= l.NumParams) { j -= l.NumParams; continue; }
            var ps = l.Module.parameters().ToList();
            long o = j / l.In, c = j % l.In;
            return c < l.InNoBias ? (ps.First(p => p.dim() >= 2), o * l.InNoBias + c) : (ps.First(p => p.dim() == 1), o);
        }
        throw new ArgumentOutOfRangeException(nameof(j));
    }

    /// <summary>Hessian of the mean training loss by central differences of gradients (float64).</summary>
    static Tensor FiniteDifferenceHessian(nn.Module<Tensor, Tensor> model, IDataset data, IAttributionTask task, double eps = 1e-5)
    {
        var layers = TrackedLayer.Find(model);
        long p = layers.Sum(l => l.NumParams);
        var cols = new List<Tensor>();
        for (long j = 0; j < p; j++)
        {
            var (t, i) = Element(layers, j);
            using (torch.no_grad()) t.view(-1)[i].add_(eps);
            var plus = MeanGradient(model, layers, data, task);
            using (torch.no_grad()) t.view(-1)[i].add_(-2 * eps);
            var minus = MeanGradient(model, layers, data, task);
            using (torch.no_grad()) t.view(-1)[i].add_(eps);
            cols.Add((plus - minus) / (2 * eps));
        }
        var h = torch.stack(cols, 1);
        return (h + h.mT) / 2;
    }

    /// <summary>Gauss-Newton matrix (1/n) Σ_i J_iᵀ (diag(p_i) − p_i p_iᵀ) J_i for softmax cross-entropy.</summary>
    static Tensor ExplicitGaussNewton(nn.Module<Tensor, Tensor> model, TensorPairDataset data)
    {
        var layers = TrackedLayer.Find(model);
        Tensor? sum = null;
        for (int i = 0; i < data.Count; i++)
        {
            var x = data.X[i];
            var j = Oracles.LogitJacobian(model, layers, x);                      // [K, P]
            var p = nn.functional.softmax(model.forward(x.unsqueeze(0)).squeeze(0).detach(), 0);
            var hOut = torch.diag(p) - p.outer(p);
            var term = j.mT.matmul(hOut).matmul(j);
            sum = sum is null ? term : sum + term;
        }
        return sum! / data.Count;
    }


    static HvpInfluence Method(nn.Module<Tensor, Tensor> model, IAttributionTask task, IDataset train, HvpSolver solver, HvpSolverOptions o) =>
        new(model, task, train, solver, o with { TrainBatchSize = 6, QueryBatchSize = 3 });

    [Fact]
    public void HvpEqualsTheFiniteDifferenceHessianProduct()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        var h = FiniteDifferenceHessian(model, train, task);
        var op = new CurvatureOperator(model, task, TrackedLayer.Find(model), train, HessianKind.True, l2: 0.3, batchSize: 5);
        var v = torch.randn(3, h.shape[0], dtype: ScalarType.Float64);
        var err = Oracles.RelErr(op.Apply(v), v.matmul(h) + 0.3 * v);
        Assert.True(err < 1e-7, $"HVP vs finite-difference Hessian: relative error {err:G3}");
    }

    [Fact]
    public void HvpOfAConvNetEqualsTheFiniteDifferenceHessianProduct()
    {
        // Covers the conv layout (weight [Out, C, kh, kw] ↔ [Out, C·kh·kw]) and layers without bias.
        torch.manual_seed(TestSeed.For());
        var model = nn.Sequential(("conv1", nn.Conv2d(1, 2, 3, padding: 1)), ("t1", nn.Tanh()),
            ("conv2", nn.Conv2d(2, 2, 2, stride: 2, bias: false)), ("t2", nn.Tanh()), ("flat", nn.Flatten()),
            ("fc", nn.Linear(8, 3))).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(3, 1, 4, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 3 }));
        Assert.Equal(new long[] { 20, 16, 27 }, TrackedLayer.Find(model).Select(l => l.NumParams));
        var task = new ClassificationTask();
        var h = FiniteDifferenceHessian(model, train, task);
        var op = new CurvatureOperator(model, task, TrackedLayer.Find(model), train, HessianKind.True, batchSize: 2);
        var v = torch.randn(2, h.shape[0], dtype: ScalarType.Float64);
        var err = Oracles.RelErr(op.Apply(v), v.matmul(h));
        Assert.True(err < 1e-6, $"conv HVP vs finite differences: relative error {err:G3}");
    }

    [Fact]
    public void GaussNewtonVectorProductEqualsTheExplicitGaussNewtonProduct()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        var g = ExplicitGaussNewton(model, train);
        var op = new CurvatureOperator(model, task, TrackedLayer.Find(model), train, HessianKind.GaussNewton, batchSize: 5);
        var v = torch.randn(3, g.shape[0], dtype: ScalarType.Float64);
        var err = Oracles.RelErr(op.Apply(v), v.matmul(g));
        Assert.True(err < 1e-10, $"GNVP vs Jᵀ H_out J: relative error {err:G3}");
        // ...and the true Hessian differs from it away from a minimum (so the test can tell them apart).
        var h = FiniteDifferenceHessian(model, train, task);
        Assert.True(Oracles.RelErr(g, h) > 1e-3);
    }

    /// <summary>Oracle scores ∇f(q)ᵀ (C + λI)⁻¹ ∇L(z) and self-influence for curvature C.</summary>
    static (Tensor Scores, Tensor Self) OracleScores(nn.Module<Tensor, Tensor> model, IAttributionTask task, IDataset train, IDataset queries, Tensor c, double damping)
    {
        var layers = TrackedLayer.Find(model);
        var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var inv = torch.linalg.inv(c + damping * torch.eye(c.shape[0], dtype: ScalarType.Float64));
        return (gq.matmul(inv).matmul(gz.mT), (gz.matmul(inv) * gz).sum(1));
    }

    /// <summary>A damping that makes H + λI comfortably positive definite.</summary>
    static double SafeDamping(Tensor h) => Math.Max(0.05, -torch.linalg.eigvalsh(h).min().item<double>() + 0.05);

    [Theory]
    [InlineData(HessianKind.True)]
    [InlineData(HessianKind.GaussNewton)]
    public void ExplicitScoresEqualTheHandInverse(HessianKind kind)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)kind);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var c = kind == HessianKind.True ? FiniteDifferenceHessian(model, train, task) : ExplicitGaussNewton(model, train);
        double damping = SafeDamping(c);
        var (scores, self) = OracleScores(model, task, train, queries, c, damping);
        var m = Method(model, task, train, HvpSolver.Explicit, new HvpSolverOptions { Damping = damping, Hessian = kind });
        Assert.True(Oracles.RelErr(m.CurvatureMatrix(), c) < 1e-7);
        Assert.True(Oracles.RelErr(m.PairwiseMatrix(queries, train), scores) < 1e-6, "pairwise");
        Assert.True(Oracles.RelErr(torch.tensor(m.SelfInfluence(train)), self) < 1e-6, "self-influence");
    }

    [Theory]
    [InlineData(HessianKind.True)]
    [InlineData(HessianKind.GaussNewton)]
    public void CgConvergesToTheExplicitInverse(HessianKind kind)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)kind);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var c = kind == HessianKind.True ? FiniteDifferenceHessian(model, train, task) : ExplicitGaussNewton(model, train);
        double damping = SafeDamping(c);
        var (scores, self) = OracleScores(model, task, train, queries, c, damping);
        var m = Method(model, task, train, HvpSolver.Cg, new HvpSolverOptions { Damping = damping, Hessian = kind, CgTolerance = 1e-10, CgMaxIterations = 200 });
        Assert.True(Oracles.RelErr(m.PairwiseMatrix(queries, train), scores) < 1e-6, "pairwise");
        Assert.True(m.LastCgReport!.MaxResidual <= 1e-10, $"residual {m.LastCgReport.MaxResidual:G3}");
        Assert.True(m.LastCgReport.Iterations <= c.shape[0] + 5);
        Assert.True(Oracles.RelErr(torch.tensor(m.SelfInfluence(train)), self) < 1e-7, "self-influence (batched CG per training batch)");
    }

    /// <summary>if-cg and if-lissa solve the queries in blocks with the scores of one solve over all of
    /// them (each query's iterates are its own; LiSSA draws the same minibatches for every block).</summary>
    [Theory]
    [InlineData(HvpSolver.Cg)]
    [InlineData(HvpSolver.Lissa)]
    public void QueriesSolvedInBlocksScoreAsOneSolve(HvpSolver solver)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)solver);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var o = new HvpSolverOptions
        {
            Damping = 0.05, Hessian = HessianKind.GaussNewton, Seed = 3, CgTolerance = 1e-14, CgMaxIterations = 5,
            LissaDepth = 30, LissaBatchSize = 5, LissaScale = 20,
        };
        var whole = Method(model, task, train, solver, o with { QueryBlockSize = 64 });
        var expected = whole.PairwiseMatrix(queries, train);
        var blocked = Method(model, task, train, solver, o with { QueryBlockSize = 3 });
        Assert.True(queries.Count > 3 && queries.Count % 3 != 0, $"{queries.Count} queries: want a partial last block");
        double err = Oracles.RelErr(blocked.PairwiseMatrix(queries, train), expected);
        Assert.True(err < 1e-12, $"{solver}: blocks of 3 against one solve: relative error {err:G3} ({TestSeed.Describe()})");
        Assert.Equal(whole.Curvature.ExampleVectorProducts, blocked.Curvature.ExampleVectorProducts);
        if (solver == HvpSolver.Cg)
        {
            Assert.Equal(queries.Count, blocked.LastCgReport!.RelativeResiduals.Length);
            Assert.Equal(whole.LastCgReport!.RelativeResiduals, blocked.LastCgReport.RelativeResiduals);
        }
    }

    [Fact]
    public void CgWithAnIterationCapReportsTheResidualItReached()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        var m = Method(model, task, train, HvpSolver.Cg, new HvpSolverOptions { Damping = 0.01, Hessian = HessianKind.GaussNewton, CgTolerance = 1e-12, CgMaxIterations = 2 });
        m.PairwiseMatrix(queries, train);
        Assert.Equal(2, m.LastCgReport!.Iterations);
        Assert.Equal(queries.Count, m.LastCgReport.RelativeResiduals.Length);
        Assert.True(m.LastCgReport.MaxResidual > 1e-12);
    }

    [Fact]
    public void LissaConvergesToTheExplicitInverse()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var c = ExplicitGaussNewton(model, train);
        double top = torch.linalg.eigvalsh(c).max().item<double>(), damping = Math.Max(0.2, top);
        var (scores, _) = OracleScores(model, task, train, queries, c, damping);
        // Full-batch HVPs: the recursion contracts by 1 − (λ_min + λ)/s ≤ 0.6 per step.
        var o = new HvpSolverOptions { Damping = damping, Hessian = HessianKind.GaussNewton, LissaScale = 1.2 * (top + damping), LissaDepth = 60, LissaBatchSize = HvpSolverOptions.FullBatch };
        var err = Oracles.RelErr(Method(model, task, train, HvpSolver.Lissa, o).PairwiseMatrix(queries, train), scores);
        Assert.True(err < 1e-6, $"LiSSA vs explicit inverse: relative error {err:G3}");
        // Stochastic minibatches (4 of 12 examples per step), averaged over repetitions: close, not exact.
        var stochastic = Method(model, task, train, HvpSolver.Lissa, o with { LissaBatchSize = 4, LissaRepetitions = 3, Seed = 3 }).PairwiseMatrix(queries, train);
        Assert.True(Oracles.Spearman(Oracles.Flat(stochastic), Oracles.Flat(scores)) > 0.9);
    }

    [Fact]
    public void LissaWithTooSmallAScaleStopsWithAnError()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        var c = ExplicitGaussNewton(model, train);
        double top = torch.linalg.eigvalsh(c).max().item<double>();
        var m = Method(model, task, train, HvpSolver.Lissa, new HvpSolverOptions { Damping = 0.1, Hessian = HessianKind.GaussNewton, LissaScale = (top + 0.1) / 3, LissaDepth = 200, LissaBatchSize = HvpSolverOptions.FullBatch });
        var e = Assert.Throws<InfluenceSharpException>(() => m.PairwiseMatrix(queries, train));
        Assert.Contains("--lissa-scale", e.Message);
    }

    [Theory]
    [InlineData(HessianKind.True)]
    [InlineData(HessianKind.GaussNewton)]
    public void ArnoldiWithFullRankEqualsTheExplicitInverse(HessianKind kind)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)kind);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var c = kind == HessianKind.True ? FiniteDifferenceHessian(model, train, task) : ExplicitGaussNewton(model, train);
        double damping = SafeDamping(c);
        var (scores, self) = OracleScores(model, task, train, queries, c, damping);
        int p = (int)c.shape[0];
        var m = Method(model, task, train, HvpSolver.Arnoldi, new HvpSolverOptions { Damping = damping, Hessian = kind, ArnoldiIterations = p, ArnoldiTopK = p });
        Assert.True(Oracles.RelErr(m.PairwiseMatrix(queries, train), scores) < 1e-6, "pairwise");
        Assert.True(Oracles.RelErr(torch.tensor(m.SelfInfluence(train)), self) < 1e-6, "self-influence");
    }

    [Fact]
    public void ArnoldiFindsTheLargestEigenvalues()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var c = ExplicitGaussNewton(model, train);
        var expected = Oracles.Flat(torch.linalg.eigvalsh(c).flip(0)).Take(3).ToArray();
        var m = Method(model, new ClassificationTask(), train, HvpSolver.Arnoldi, new HvpSolverOptions { Hessian = HessianKind.GaussNewton, ArnoldiIterations = 30, ArnoldiTopK = 3 });
        var found = m.ArnoldiEigenvalues();
        for (int i = 0; i < 3; i++) Assert.True(Math.Abs(found[i] - expected[i]) < 1e-8 * expected[0], $"eigenvalue {i}: {found[i]} vs {expected[i]}");
    }

    [Fact]
    public void BadSettingsAreRefusedWithClearMessages()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        var e = Assert.Throws<InfluenceSharpException>(() => new HvpInfluence(model, task, train, HvpSolver.Explicit, new HvpSolverOptions { MaxExplicitParameters = 40 }));
        Assert.Contains("43 parameters", e.Message);
        Assert.Contains("if-cg", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => new HvpInfluence(model, task, train, HvpSolver.Cg, new HvpSolverOptions { Damping = 0 }));
        Assert.Contains("gauss-newton", e.Message);
        _ = new HvpInfluence(model, task, train, HvpSolver.Cg, new HvpSolverOptions { Damping = 0, Hessian = HessianKind.GaussNewton });
        Assert.Throws<InfluenceSharpException>(() => new HvpInfluence(model, task, train, HvpSolver.Lissa, new HvpSolverOptions { LissaScale = 0 }));
        Assert.Throws<InfluenceSharpException>(() => new HvpInfluence(model, task, train, HvpSolver.Arnoldi, new HvpSolverOptions { ArnoldiIterations = 5, ArnoldiTopK = 6 }));
        Assert.Throws<InfluenceSharpException>(() => new HvpInfluence(model, task, train, HvpSolver.Explicit, new HvpSolverOptions { Damping = -1 }));
    }
}

/// <summary>if-lissa's tuning from the curvature's spectrum and if-arnoldi's report of the spectrum it keeps.</summary>
public class HvpTuningTests
{
    sealed class Collect : IProgress<InfluenceSharp.Diagnostics.ProgressUpdate>
    {
        public List<InfluenceSharp.Diagnostics.ProgressUpdate> Updates { get; } = new();
        public void Report(InfluenceSharp.Diagnostics.ProgressUpdate value) => Updates.Add(value);
    }


    [Fact]
    public void LissaWithoutSettingsTunesItselfFromTheSpectrumAndConverges()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask(QueryMeasurement.Margin);
        const double damping = 0.3, l2 = 0.05;
        var o = new HvpSolverOptions { Damping = damping, L2 = l2, Hessian = HessianKind.GaussNewton, TrainBatchSize = 6, QueryBatchSize = 3 };
        var exact = new HvpInfluence(model, task, train, HvpSolver.Explicit, o);
        var c = exact.CurvatureMatrix();                                   // L2 included
        double top = torch.linalg.eigvalsh(c).max().item<double>(), trace = torch.trace(c).item<double>();
        var progress = new Collect();
        var lissa = new HvpInfluence(model, task, train, HvpSolver.Lissa, o with { Progress = progress });
        var t = lissa.TuneLissa();
        Assert.True(Math.Abs(t.LambdaMax - top) < 1e-6 * top, $"λ_max {t.LambdaMax} vs {top}");
        Assert.True(Math.Abs(t.Trace - trace) < 0.3 * trace, $"trace {t.Trace} vs {trace}");
        Assert.Equal(1.5 * (t.LambdaMax + damping), t.Scale, 12);
        Assert.Equal((int)Math.Ceiling(t.Scale / (damping + l2) * Math.Log(100)), t.Depth);
        Assert.Contains(progress.Updates, u => u.Final && u.Label == "if-lissa tuning" && u.Suffix!.Contains("scale") && u.Suffix.Contains("tuned"));
        var expected = exact.PairwiseMatrix(queries, train).to(ScalarType.Float64);
        var err = (lissa.PairwiseMatrix(queries, train).to(ScalarType.Float64) - expected).abs().max().item<double>() / expected.abs().max().item<double>();
        Assert.True(err < 0.02, $"tuned LiSSA vs explicit: relative error {err:G3}");
        // Settings given are kept.
        var given = new HvpInfluence(model, task, train, HvpSolver.Lissa, o with { LissaScale = 7, LissaDepth = 9, LissaBatchSize = 5 }).TuneLissa();
        Assert.Equal((7.0, 9, 5), (given.Scale, given.Depth, given.BatchSize));
        Assert.True(double.IsNaN(given.LambdaMax));
    }

    [Fact]
    public void ArnoldiReportsTheFractionOfTheInverseSpectrumItKeeps()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        const double damping = 1e-4;
        var o = new HvpSolverOptions { Damping = damping, Hessian = HessianKind.GaussNewton, TrainBatchSize = 6 };
        var c = new HvpInfluence(model, task, train, HvpSolver.Explicit, o).CurvatureMatrix();
        var eig = Oracles.Flat(torch.linalg.eigvalsh(c).flip(0)).Select(v => Math.Max(v, 0)).ToArray();
        double Exact(int k) => eig.Take(k).Sum(v => 1 / (v + damping)) / eig.Sum(v => 1 / (v + damping));
        var progress = new Collect();
        var m = new HvpInfluence(model, task, train, HvpSolver.Arnoldi, o with { ArnoldiIterations = 10, ArnoldiTopK = 3, Progress = progress });
        m.ArnoldiEigenvalues();
        Assert.True(m.ArnoldiKeptFraction < 0.5, $"kept fraction {m.ArnoldiKeptFraction}");
        Assert.True(m.ArnoldiKeptFraction >= 0.5 * Exact(3), $"bound {m.ArnoldiKeptFraction} vs exact {Exact(3)}");
        Assert.Contains(progress.Updates, u => u.Final && u.Label == "if-arnoldi spectrum" && u.Suffix!.Contains("WARNING"));
        int p = (int)c.shape[0];
        var full = new HvpInfluence(model, task, train, HvpSolver.Arnoldi, o with { ArnoldiIterations = p, ArnoldiTopK = p });
        int kept = full.ArnoldiEigenvalues().Length;            // fewer than P when the Krylov space closes early
        Assert.True(full.ArnoldiKeptFraction >= 0.99 * Exact(kept) && full.ArnoldiKeptFraction <= 1, $"full: {full.ArnoldiKeptFraction} vs {Exact(kept)}");
    }
}
