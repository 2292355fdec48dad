using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Astra;
using InfluenceSharp.Methods.InfluenceFunctions;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>ekfac-astra against if-explicit's float64 inverse and the EK-FAC influence function.</summary>
public class AstraTests
{

    static Factors Ekfac(nn.Module<Tensor, Tensor> model, IAttributionTask task, IDataset train) =>
        new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = 6 }).Fit(train)!;

    static HvpSolverOptions System(double damping, HessianKind kind) =>
        new() { Damping = damping, Hessian = kind, TrainBatchSize = 6, QueryBatchSize = 3 };


    [Theory]
    [InlineData(HessianKind.True)]
    [InlineData(HessianKind.GaussNewton)]
    public void ConvergesToIfExplicit(HessianKind kind)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)kind);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var probe = new HvpInfluence(model, task, train, HvpSolver.Explicit, System(1, kind));
        double damping = Math.Max(0.05, -torch.linalg.eigvalsh(probe.CurvatureMatrix()).min().item<double>() + 0.05);
        var exact = new HvpInfluence(model, task, train, HvpSolver.Explicit, System(damping, kind));
        var expected = exact.PairwiseMatrix(queries, train);
        using var factors = Ekfac(model, task, train);
        var ekfac = new EkfacAstra(model, task, train, factors, new AstraOptions { System = System(damping, kind), Steps = 0 });
        Assert.True(Oracles.RelErr(ekfac.PairwiseMatrix(queries, train), expected) > 1e-3, "EK-FAC alone should differ from the exact inverse here");
        var astra = new EkfacAstra(model, task, train, factors, new AstraOptions { System = System(damping, kind), Steps = 60 });
        double err = Oracles.RelErr(astra.PairwiseMatrix(queries, train), expected);
        Assert.True(err < 1e-5, $"ekfac-astra vs if-explicit: relative error {err:G3}");
        Assert.True(astra.LastReport!.MaxResidual < 1e-9, $"residual {astra.LastReport.MaxResidual:G3}");
        Assert.True(astra.LastReport.Steps < 45, $"PCG took {astra.LastReport.Steps} steps for 43 parameters");
        var selfErr = Oracles.RelErr(torch.tensor(astra.SelfInfluence(train)), torch.tensor(exact.SelfInfluence(train)));
        Assert.True(selfErr < 1e-7, $"self-influence: relative error {selfErr:G3}");
    }

    [Fact]
    public void StepZeroIsTheEkfacInfluenceFunction()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        using var factors = Ekfac(model, task, train);
        const double damping = 0.07;
        var expected = new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = damping, TrainBatchSize = 5 }).PairwiseMatrix(queries, train);
        var astra = new EkfacAstra(model, task, train, factors, new AstraOptions { System = System(damping, HessianKind.GaussNewton), Steps = 0 });
        double err = Oracles.RelErr(astra.PairwiseMatrix(queries, train), expected);
        Assert.True(err < 1e-6, $"step 0 vs ekfac: relative error {err:G3}");
        Assert.Equal(0, astra.Curvature.ExampleVectorProducts);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(60)]
    public void WeightedScoresSolveTheWeightedQueryOnce(int steps)
    {
        // Linear in the right-hand side at step 0 (EK-FAC) and once PCG has converged (the exact
        // inverse); in between, CG's iterates are not linear in b, so the weighted solve is its own approximation.
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + steps, n: 10);
        var task = new ClassificationTask(QueryMeasurement.Loss);
        using var factors = Ekfac(model, task, train);
        var options = new AstraOptions { System = System(0.3, HessianKind.GaussNewton), Steps = steps };
        var weights = new[] { 0.7, -1.3, 0.0, 2.1 };
        var pairwise = new EkfacAstra(model, task, train, factors, options).PairwiseMatrix(queries, train).to(ScalarType.Float64);
        var expected = torch.tensor(weights, new long[] { 1, 4 }, ScalarType.Float64).matmul(pairwise).reshape(-1);
        var astra = new EkfacAstra(model, task, train, factors, options);
        var actual = torch.tensor(ValidationAttribution.Scores(astra, queries, train, weights));
        double err = Oracles.RelErr(actual, expected);
        Assert.True(err < 1e-5, $"weighted scores vs the weighted sum of pairwise scores: relative error {err:G3}");
        // One right-hand side: a residual and one product per step over the 10 training examples.
        long expectedProducts = steps == 0 ? 0 : (1 + astra.LastReport!.Steps) * 10L;
        Assert.Equal(expectedProducts, astra.Curvature.ExampleVectorProducts);
    }

    [Fact]
    public void GroupObjectiveWarningsFollowTheTintedBenchmarkAndDampingOnSgdRuns()
    {
        // Measured on the tinted benchmark: ekfac and knn-shapley collapsed a group, ekfac-astra did not.
        Assert.Null(AttributionMethods.Find("ekfac-astra")!.GroupObjectiveWarning);
        Assert.Equal(GroupObjectiveWarnings.Accurate, AttributionMethods.Find("ekfac")!.GroupObjectiveWarning);
        Assert.Equal(GroupObjectiveWarnings.KnnShapley, AttributionMethods.Find("knn-shapley")!.GroupObjectiveWarning);
        Assert.Null(AttributionMethods.Find("trak")!.GroupObjectiveWarning);
        Assert.StartsWith("0.01 ", AttributionMethods.Find("ekfac-astra")!.DampingHeuristic);
    }

    /// <summary>Queries solved in blocks give the scores of one solve over all of them (each query's
    /// iterates are its own; mini-batch steps draw the same batches in every block), with one report.</summary>
    [Theory]
    [InlineData(AstraIteration.Pcg)]
    [InlineData(AstraIteration.Neumann)]
    public void QueriesSolvedInBlocksScoreAsOneSolve(AstraIteration iteration)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)iteration, n: 12);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        using var factors = Ekfac(model, task, train);
        var options = new AstraOptions
        {
            System = System(0.05, HessianKind.GaussNewton) with { Seed = 5 }, Steps = 6, Iteration = iteration, Tolerance = 0,
            NeumannStep = iteration == AstraIteration.Neumann ? null : 1.0,
            NeumannBatchSize = iteration == AstraIteration.Neumann ? 5 : null,
        };
        var whole = new EkfacAstra(model, task, train, factors, options with { QueryBlockSize = 64 });
        var expected = whole.PairwiseMatrix(queries, train);
        var blocked = new EkfacAstra(model, task, train, factors, options with { QueryBlockSize = 3 });
        var actual = blocked.PairwiseMatrix(queries, train);
        Assert.True(queries.Count > 3 && queries.Count % 3 != 0, $"{queries.Count} queries: want a partial last block");
        Assert.Equal(expected.shape, actual.shape);
        double err = Oracles.RelErr(actual, expected);
        Assert.True(err < 1e-12, $"{iteration}: blocks of 3 against one solve: relative error {err:G3} ({TestSeed.Describe()})");
        Assert.Equal(whole.Curvature.ExampleVectorProducts, blocked.Curvature.ExampleVectorProducts);
        Assert.Equal(queries.Count, blocked.LastReport!.RelativeResiduals[^1].Length);
        Assert.Equal(whole.LastReport!.MaxResidual, blocked.LastReport.MaxResidual, 12);
    }

    /// <summary>Blocks' reports merge column by column; a block that stopped early (PCG converged)
    /// keeps its last residuals for the steps the other blocks still took.</summary>
    [Fact]
    public void BlockReportsMergeWithEarlyStoppedBlocksHoldingTheirLastResiduals()
    {
        var a = new AstraReport(2, new[] { new[] { 0.9, 0.8 }, new[] { 0.5, 0.4 }, new[] { 0.1, 0.2 } });
        var b = new AstraReport(1, new[] { new[] { 0.7 }, new[] { 1e-13 } });
        var merged = AstraReport.Concat(new[] { a, b });
        Assert.Equal(2, merged.Steps);
        Assert.Equal(new[] { 0.9, 0.8, 0.7 }, merged.RelativeResiduals[0]);
        Assert.Equal(new[] { 0.5, 0.4, 1e-13 }, merged.RelativeResiduals[1]);
        Assert.Equal(new[] { 0.1, 0.2, 1e-13 }, merged.RelativeResiduals[2]);
        Assert.Equal(0.2, merged.MaxResidual);
        var cg = CgReport.Concat(new[] { new CgReport(4, new[] { 0.3, 0.1 }), new CgReport(7, new[] { 0.6 }) });
        Assert.Equal(7, cg.Iterations);
        Assert.Equal(new[] { 0.3, 0.1, 0.6 }, cg.RelativeResiduals);
    }

    /// <summary>‖x_k − x*‖²_A per right-hand side, A = C + λI.</summary>
    static double[] ErrorNorms(Tensor x, Tensor exact, Tensor a)
    {
        var e = x - exact;
        return Oracles.Flat((e.matmul(a) * e).sum(1));
    }

    [Theory]
    [InlineData(AstraIteration.Pcg)]
    [InlineData(AstraIteration.Neumann)]
    public void MoreStepsNeverMoveAwayFromTheExactSolution(AstraIteration iteration)
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For() + (int)iteration);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        const double damping = 0.02;
        var exactMethod = new HvpInfluence(model, task, train, HvpSolver.Explicit, System(damping, HessianKind.GaussNewton));
        var c = exactMethod.CurvatureMatrix();
        var a = c + damping * torch.eye(c.shape[0], dtype: ScalarType.Float64);
        var b = new PerExampleGradients(model, task, TrackedLayer.Find(model)).All(queries, 3, query: true);
        var exact = torch.linalg.solve(a, b.mT).mT;
        using var factors = Ekfac(model, task, train);
        var pc = new EkfacAstra(model, task, train, factors, new AstraOptions { System = System(damping, HessianKind.GaussNewton), Steps = 0 });
        // Neumann: η = 1/μ_max(M⁻¹A) keeps every preconditioned eigenvalue's factor |1 − ημ| below 1.
        var minv = pc.Precondition(torch.eye(c.shape[0], dtype: ScalarType.Float64));
        double muMax = torch.linalg.eigvals(minv.matmul(a)).real.max().item<double>();
        double[]? previous = null, first = null;
        for (int k = 0; k <= 12; k++)
        {
            var m = new EkfacAstra(model, task, train, factors, new AstraOptions
            {
                System = System(damping, HessianKind.GaussNewton), Steps = k, Iteration = iteration, NeumannStep = 1 / muMax, Tolerance = 0,
            });
            var err = ErrorNorms(m.InverseHvp(b), exact, a);
            first ??= err;
            if (previous is not null)
                for (int i = 0; i < err.Length; i++)
                    Assert.True(err[i] <= previous[i] * (1 + 1e-9) + 1e-24, $"{iteration} step {k}, query {i}: A-norm error grew from {previous[i]:G6} to {err[i]:G6}");
            previous = err;
        }
        for (int i = 0; i < first!.Length; i++)
            Assert.True(previous![i] < 0.5 * first[i], $"{iteration}: 12 steps reduced the error of query {i} only from {first[i]:G3} to {previous[i]:G3}");
    }

    /// <summary>The automatic Neumann step is 1/μ̂ with μ̂ the power-iteration estimate of the largest
    /// eigenvalue of M⁻¹(H + λI), against the explicit matrices' eigenvalues; its steps then never
    /// move away from the exact solution.</summary>
    [Fact]
    public void AutomaticNeumannStepIsOneOverTheLargestPreconditionedEigenvalue()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask(QueryMeasurement.Margin);
        const double damping = 0.02;
        var c = new HvpInfluence(model, task, train, HvpSolver.Explicit, System(damping, HessianKind.GaussNewton)).CurvatureMatrix();
        var a = c + damping * torch.eye(c.shape[0], dtype: ScalarType.Float64);
        using var factors = Ekfac(model, task, train);
        var options = new AstraOptions { System = System(damping, HessianKind.GaussNewton), Steps = 4, Iteration = AstraIteration.Neumann, NeumannStep = null, PowerIterations = 60, Tolerance = 0 };
        var m = new EkfacAstra(model, task, train, factors, options);
        var minv = m.Precondition(torch.eye(c.shape[0], dtype: ScalarType.Float64));
        double muMax = torch.linalg.eigvals(minv.matmul(a)).real.max().item<double>();
        var b = new PerExampleGradients(model, task, TrackedLayer.Find(model)).All(queries, 3, query: true);
        var x = m.InverseHvp(b);
        Assert.True(Math.Abs(m.NeumannStepUsed!.Value * muMax - 1) < 0.02, $"step {m.NeumannStepUsed} against 1/μ_max = {1 / muMax} ({TestSeed.Describe()})");
        // The same solve with that step given by hand.
        var given = new EkfacAstra(model, task, train, factors, options with { NeumannStep = m.NeumannStepUsed });
        Assert.True(x.allclose(given.InverseHvp(b), rtol: 1e-12, atol: 0));
        var exact = torch.linalg.solve(a, b.mT).mT;
        var errors = m.LastReport!.RelativeResiduals;
        for (int i = 0; i < errors[0].Length; i++) Assert.True(errors[^1][i] < errors[0][i], $"query {i}: residual {errors[0][i]:G3} -> {errors[^1][i]:G3}");
        Assert.True((x - exact).norm().item<double>() < (m.Precondition(b) - exact).norm().item<double>());
    }

    /// <summary>Mini-batch Neumann steps: each step's curvature product runs over a fresh batch
    /// (the float64 oracle replays the same batches with explicit per-batch matrices), costs
    /// batch/n of a full step, and many such steps still approach the exact solution.</summary>
    [Fact]
    public void MiniBatchNeumannStepsDrawAFreshBatchEachStepAndApproachTheExactSolution()
    {
        int seed = TestSeed.For();
        const int n = 16, batch = 6, steps = 150;
        var (model, train, queries) = Oracles.TinyMlpProblem(seed, n: n);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        const double damping = 0.05;
        var system = System(damping, HessianKind.GaussNewton) with { Seed = 11 };
        var exactMethod = new HvpInfluence(model, task, train, HvpSolver.Explicit, system);
        var c = exactMethod.CurvatureMatrix();
        long p = c.shape[0];
        var eye = torch.eye(p, dtype: ScalarType.Float64);
        var a = c + damping * eye;
        var b = new PerExampleGradients(model, task, TrackedLayer.Find(model)).All(queries, 3, query: true);
        var exact = torch.linalg.solve(a, b.mT).mT;
        using var factors = Ekfac(model, task, train);
        var pc = new EkfacAstra(model, task, train, factors, new AstraOptions { System = system, Steps = 0 });
        var minv = pc.Precondition(eye);
        double muMax = torch.linalg.eigvals(minv.matmul(a)).real.max().item<double>();
        double eta = 0.3 / muMax;
        var options = new AstraOptions { System = system, Steps = steps, Iteration = AstraIteration.Neumann, NeumannStep = eta, NeumannBatchSize = batch, Tolerance = 0 };
        var m = new EkfacAstra(model, task, train, factors, options);
        var x = m.InverseHvp(b);
        Assert.Equal((long)steps * b.shape[0] * batch, m.Curvature.ExampleVectorProducts);

        // The oracle: the same batches (the solver's seeded draw), each step's matrix the mean of the
        // drawn examples' explicit curvature matrices (symmetric: rows = columns).
        var perExample = Enumerable.Range(0, n).Select(i => pc.Curvature.Apply(eye, new[] { i })).ToArray();
        var rng = new Random(InfluenceSharp.Seeds.Derive(11, 0xBA7C));
        var perm = Enumerable.Range(0, n).ToArray();
        var xo = pc.Precondition(b) * eta;
        for (int k = 0; k < steps; k++)
        {
            using var scope = NewDisposeScope();
            for (int i = 0; i < batch; i++) { int j = rng.Next(i, n); (perm[i], perm[j]) = (perm[j], perm[i]); }
            var ck = torch.stack(perm[..batch].Select(i => perExample[i]).ToArray()).mean(new long[] { 0 }) + damping * eye;
            xo = (xo + eta * pc.Precondition(b - xo.matmul(ck))).MoveToOuterDisposeScope();
        }
        double err = Oracles.RelErr(x, xo);
        Assert.True(err < 1e-8, $"mini-batch Neumann vs the explicit replay of its batches: relative error {err:G3} ({TestSeed.Describe()})");

        // Noisy steps, but on average the full system's: far closer to the exact solution than EK-FAC
        // (summed over the queries; one query alone can sit higher on its batches' noise).
        var e0 = ErrorNorms(pc.Precondition(b), exact, a);
        var e = ErrorNorms(x, exact, a);
        double ratio = e.Sum() / e0.Sum();
        Assert.True(ratio < 0.3, $"A-norm error after {steps} mini-batch steps: {ratio:G3} of EK-FAC's ({TestSeed.Describe()})");
        // Refused with conjugate gradient, which needs exact products.
        Assert.Throws<InfluenceSharpException>(() => new EkfacAstra(model, task, train, factors, options with { Iteration = AstraIteration.Pcg }));
    }

    [Fact]
    public void TheNeumannStepOptionTakesANumberOrAuto()
    {
        var p = EkfacAstraMethod.NeumannStep;
        Assert.Null(p.Validate("auto"));
        Assert.Null(p.Validate("0.05"));
        Assert.Equal("--astra-neumann-step fast: expected a finite number or 'auto'", p.Validate("fast"));
        Assert.Equal("--astra-neumann-step -1: must be at least 0", p.Validate("-1"));
    }

    [Fact]
    public void BadSettingsAreRefused()
    {
        var (model, train, _) = Oracles.TinyMlpProblem(TestSeed.For());
        var task = new ClassificationTask();
        using var factors = Ekfac(model, task, train);
        Assert.Throws<InfluenceSharpException>(() => new EkfacAstra(model, task, train, factors, new AstraOptions { Steps = -1 }));
        var e = Assert.Throws<InfluenceSharpException>(() => new EkfacAstra(model, task, train, factors, new AstraOptions { System = new HvpSolverOptions { Damping = 0 } }));
        Assert.Contains("gauss-newton", e.Message);
        using var fc1Only = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, Layers = "fc1" }).Fit(train)!;
        e = Assert.Throws<InfluenceSharpException>(() => new EkfacAstra(model, task, train, fc1Only, new AstraOptions()));
        Assert.Contains("'fc2'", e.Message, StringComparison.Ordinal);
    }
}
