using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

public class TracInTests
{
    static TensorPairDataset Data(int n, params long[] shape) =>
        new(torch.randn(new[] { (long)n }.Concat(shape).ToArray(), dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));

    /// <summary>C differently initialised copies of one architecture with random step sizes.</summary>
    static List<TracInCheckpoint> Checkpoints(int c, Func<nn.Module<Tensor, Tensor>> make)
    {
        var rng = TestSeed.Random();
        return Enumerable.Range(0, c).Select(_ => new TracInCheckpoint(make().to(ScalarType.Float64), 0.01 + rng.NextDouble())).ToList();
    }

    static TracInOptions Quiet => new() { TrainBatchSize = 5, BlockSize = 7 };

    /// <summary>Σ_c η_c G_q,c G_z,cᵀ from per-example backward loops (float64).</summary>
    static Tensor OracleScores(IReadOnlyList<TracInCheckpoint> cps, IAttributionTask task, IDataset q, IDataset z, string? layers = null, bool normalize = false)
    {
        Tensor total = torch.zeros(q.Count, z.Count, dtype: ScalarType.Float64);
        foreach (var cp in cps)
        {
            var ls = TrackedLayer.Find(cp.Model, layers);
            var gq = Oracles.PerExampleGradients(cp.Model, ls, q, task.QueryMeasure);
            var gz = Oracles.PerExampleGradients(cp.Model, ls, z, task.TrainLoss);
            if (normalize)
            {
                gq = gq / gq.norm(1, true);
                gz = gz / gz.norm(1, true);
            }
            total = total + cp.StepSize * gq.matmul(gz.mT);
        }
        return total;
    }

    static Tensor OracleSelf(IReadOnlyList<TracInCheckpoint> cps, IAttributionTask task, IDataset z, string? layers = null)
    {
        Tensor total = torch.zeros(z.Count, dtype: ScalarType.Float64);
        foreach (var cp in cps)
            total = total + cp.StepSize * Oracles.PerExampleGradients(cp.Model, TrackedLayer.Find(cp.Model, layers), z, task.TrainLoss).square().sum(1);
        return total;
    }

    static double RelErr(Tensor a, Tensor b) =>
        ((a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).norm() / b.to(ScalarType.Float64).norm()).item<double>();

    [Theory]
    [InlineData(QueryMeasurement.Loss)]
    [InlineData(QueryMeasurement.Margin)]
    public void TracInCPEqualsStepWeightedPerCheckpointGradientDotProducts(QueryMeasurement measurement)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(3, () => new ConvNet(3));
        var train = Data(11, 2, 8, 8);
        var queries = Data(4, 2, 8, 8);
        var task = new ClassificationTask(measurement);
        using var tracin = new TracInCP(cps, task, Quiet);
        Assert.Equal(new[] { "conv1", "conv2", "fc1", "fc2" }, tracin.Layers.Select(l => l.Name));
        var oracle = OracleScores(cps, task, queries, train);
        var scores = tracin.PairwiseMatrix(queries, train);
        Assert.Equal(new long[] { 4, 11 }, scores.shape);
        Assert.True(RelErr(scores, oracle) < 1e-6, $"relative error {RelErr(scores, oracle)}");
        // Training-side features in float64 give the scores to float64 precision.
        var f = tracin.TrainFeatures(train)["features"];
        var qf = tracin.QueryFeatures(queries)["features"];
        var layout = new TracInLayout(((TracInGradientFeaturizer)tracin.Featurizer).Layout.Segments, cps.Select(c => c.StepSize).ToArray(), false);
        Assert.True(RelErr(layout.Pairwise(qf, f), oracle) < 1e-12);
        var self = tracin.SelfInfluence(train);
        Assert.Equal(Oracles.Flat(OracleSelf(cps, task, train)), self, new ToleranceComparer(1e-10));
        // The filter restricts TracIn to a subset of layers.
        using var fc = new TracInCP(cps, task, Quiet with { Layers = "fc" });
        Assert.True(RelErr(fc.PairwiseMatrix(queries, train), OracleScores(cps, task, queries, train, "fc")) < 1e-6);
    }

    [Fact]
    public void GradDotAndGradCosAreOneCheckpointSpecialCases()
    {
        torch.manual_seed(TestSeed.For());
        var model = new TwoLayerMlp(5, 6, 3).to(ScalarType.Float64);
        var train = Data(9, 5); var queries = Data(3, 5);
        var task = new ClassificationTask();
        var one = new[] { new TracInCheckpoint(model, 1.0) };
        using var dot = GradDot.Create(model, task, Quiet);
        using var cos = GradCos.Create(model, task, Quiet);
        Assert.Equal("graddot", dot.Name); Assert.Equal("gradcos", cos.Name);
        Assert.True(RelErr(dot.PairwiseMatrix(queries, train), OracleScores(one, task, queries, train)) < 1e-6);
        var cosScores = cos.PairwiseMatrix(queries, train);
        Assert.True(RelErr(cosScores, OracleScores(one, task, queries, train, normalize: true)) < 1e-6);
        Assert.True(cosScores.abs().max().item<float>() <= 1 + 1e-6);
        Assert.All(cos.SelfInfluence(train), s => Assert.Equal(1.0, s, 12));
        Assert.Equal(Oracles.Flat(OracleSelf(one, task, train)), dot.SelfInfluence(train), new ToleranceComparer(1e-10));
    }

    [Theory]
    [InlineData(1, QueryMeasurement.Loss)]
    [InlineData(3, QueryMeasurement.Loss)]
    [InlineData(3, QueryMeasurement.Margin)]
    public void LastLayerFastFormEqualsTracInCPRestrictedToTheLastLayer(int checkpoints, QueryMeasurement measurement)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(checkpoints, () => new TwoLayerMlp(5, 7, 3));
        var train = Data(13, 5); var queries = Data(4, 5);
        var task = new ClassificationTask(measurement);
        using var exact = new TracInCP(cps, task, Quiet with { Layers = "fc2" });
        using var fast = new TracInCPFast(cps, task, new TracInFastOptions { TrainBatchSize = 4, BlockSize = 6 });
        Assert.Equal("fc2", fast.LayerName);
        var oracle = OracleScores(cps, task, queries, train, "fc2");
        // Float64 features: the stacked vectors' dot products are the TracIn scores to float64 precision.
        var stackedScores = fast.Embed(queries, asQuery: true).matmul(fast.Embed(train).mT);
        Assert.Equal(new long[] { 13, checkpoints * 3 * 8 }, fast.Embed(train).shape);
        Assert.True(RelErr(stackedScores, oracle) < 1e-12, $"stacked: {RelErr(stackedScores, oracle)}");
        var a = fast.PairwiseMatrix(queries, train); var b = exact.PairwiseMatrix(queries, train);
        Assert.True(RelErr(a, b) < 1e-6 && RelErr(a, oracle) < 1e-6, $"fast vs exact {RelErr(a, b)}");
        Assert.Equal(exact.SelfInfluence(train), fast.SelfInfluence(train), new ToleranceComparer(1e-12));
        // Stacked rows in the store give the same scores as factored rows.
        using var stacked = new TracInCPFast(cps, task, new TracInFastOptions { Stacked = true });
        Assert.True(RelErr(stacked.PairwiseMatrix(queries, train), b) < 1e-6);
        // Without the bias column the scores change (the reference code's simplification).
        using var noBias = new TracInCPFast(cps, task, new TracInFastOptions { IncludeBias = false });
        Assert.True(RelErr(noBias.PairwiseMatrix(queries, train), b) > 1e-4);
    }

    /// <summary>(Σ_c g·g')(Σ_c a·a') is not TracIn. It agrees for one checkpoint only.</summary>
    [Fact]
    public void ProductOfSumsDiffersFromTheSumOfPerCheckpointProducts()
    {
        torch.manual_seed(TestSeed.For());
        var task = new ClassificationTask();
        var train = Data(10, 5); var queries = Data(3, 5);

        Tensor ProductOfSums(TracInCPFast m, IReadOnlyList<TracInCheckpoint> cps)
        {
            var fq = m.Factors(queries, asQuery: true); var fz = m.Factors(train);
            Tensor? gg = null, aa = null;
            for (int c = 0; c < cps.Count; c++)
            {
                var g = cps[c].StepSize * fq[c].G.matmul(fz[c].G.mT);
                var a = fq[c].A.matmul(fz[c].A.mT);
                gg = gg is null ? g : gg + g; aa = aa is null ? a : aa + a;
            }
            return gg! * aa!;
        }

        var three = Checkpoints(3, () => new TwoLayerMlp(5, 7, 3));
        using var fast3 = new TracInCPFast(three, task, new TracInFastOptions());
        var right = OracleScores(three, task, queries, train, "fc2");
        var wrong = ProductOfSums(fast3, three);
        Assert.True(RelErr(wrong, right) > 0.05, $"product of sums is unexpectedly close: {RelErr(wrong, right)}");
        Assert.True(RelErr(fast3.PairwiseMatrix(queries, train), right) < 1e-6);

        var one = three.Take(1).ToList();
        using var fast1 = new TracInCPFast(one, task, new TracInFastOptions());
        Assert.True(RelErr(ProductOfSums(fast1, one), OracleScores(one, task, queries, train, "fc2")) < 1e-12);
    }

    [Fact]
    public void FastFormWorksInsideSequentialAndRefusesTransformedLogits()
    {
        torch.manual_seed(TestSeed.For());
        var seq = nn.Sequential(("0", nn.Linear(4, 6)), ("1", nn.ReLU()), ("2", nn.Linear(6, 3))).to(ScalarType.Float64);
        var cps = new[] { new TracInCheckpoint(seq, 0.5) };
        var data = Data(7, 4);
        using (var fast = new TracInCPFast(cps, null, new TracInFastOptions()))
        {
            Assert.Equal("2", fast.LayerName);
            Assert.True(RelErr(fast.PairwiseMatrix(data, data), OracleScores(cps, new ClassificationTask(), data, data, "2")) < 1e-6);
        }
        var model = nn.Sequential(("fc", nn.Linear(4, 3)), ("act", nn.Tanh())).to(ScalarType.Float64);
        using var refused = new TracInCPFast(new[] { new TracInCheckpoint(model, 1) }, null, new TracInFastOptions());
        var e = Assert.Throws<InfluenceSharpException>(() => refused.SelfInfluence(data));
        Assert.Contains("logits", e.Message);
    }

    [Theory]
    [InlineData(ProjectionLayout.Dense, ProjectionKind.Orthogonal)]
    [InlineData(ProjectionLayout.Dense, ProjectionKind.Identity)]
    [InlineData(ProjectionLayout.Kronecker, ProjectionKind.Rademacher)]   // dims ≥ layer sizes: not projected
    public void ProjectionAtLeastAsWideAsTheGradientIsExact(ProjectionLayout layout, ProjectionKind kind)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(2, () => new TwoLayerMlp(4, 5, 3));   // 25 + 18 = 43 parameters
        var train = Data(12, 4); var queries = Data(3, 4);
        var task = new ClassificationTask();
        var proj = new ProjectionOptions { Layout = layout, Kind = kind, Dim = 64, GradientDim = 8, ActivationDim = 8, Seed = 5 };
        using var rp = new TracInCPFastRandProj(cps, task, new TracInRandProjOptions { Projection = proj });
        Assert.Equal(2 * (kind == ProjectionKind.Identity || layout == ProjectionLayout.Kronecker ? 43 : 64), rp.Dim);
        var oracle = OracleScores(cps, task, queries, train);
        var emb = rp.Embed(queries, asQuery: true).matmul(rp.Embed(train).mT);
        // Exact up to the float32 rounding of the stored projection entries (P Pᵀ = I to ~1e-7).
        double tol = kind == ProjectionKind.Orthogonal ? 1e-6 : 1e-10;
        Assert.True(RelErr(emb, oracle) < tol, $"relative error {RelErr(emb, oracle)}");
        Assert.True(RelErr(rp.PairwiseMatrix(queries, train), oracle) < 1e-6);
        Assert.Equal(Oracles.Flat(OracleSelf(cps, task, train)), rp.SelfInfluence(train), new ToleranceComparer(Math.Max(tol, 1e-9)));
    }

    [Theory]
    [InlineData(ProjectionLayout.Dense, ProjectionKind.Rademacher)]
    [InlineData(ProjectionLayout.Dense, ProjectionKind.Gaussian)]
    [InlineData(ProjectionLayout.Kronecker, ProjectionKind.Rademacher)]
    [InlineData(ProjectionLayout.Kronecker, ProjectionKind.Gaussian)]
    public void ProjectionErrorShrinksAsTheDimensionGrows(ProjectionLayout layout, ProjectionKind kind)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(2, () => new TwoLayerMlp(24, 30, 10));  // fc1 30x25, fc2 10x31: 1060 parameters
        var train = Data(40, 24); var queries = Data(6, 24);
        var task = new ClassificationTask();
        using var exact = new TracInCP(cps, task, Quiet);
        var oracle = exact.PairwiseMatrix(queries, train);
        var dims = layout == ProjectionLayout.Dense ? new[] { (4, 0, 0), (64, 0, 0), (1024, 0, 0) } : new[] { (0, 1, 2), (0, 4, 8), (0, 24, 24) };
        // Mean relative error over a fixed set of seeds (the estimator's spread is large at tiny k).
        var errors = dims.Select(d => Enumerable.Range(11, 4).Average(seed =>
        {
            var proj = new ProjectionOptions { Layout = layout, Kind = kind, Dim = d.Item1, GradientDim = d.Item2, ActivationDim = d.Item3, Seed = seed };
            using var rp = new TracInCPFastRandProj(cps, task, new TracInRandProjOptions { Projection = proj });
            return RelErr(rp.PairwiseMatrix(queries, train), oracle);
        })).ToArray();
        Assert.True(errors[0] > errors[1] && errors[1] > errors[2], $"errors {string.Join(", ", errors)}");
        Assert.True(errors[2] < 0.5 * errors[0], $"errors {string.Join(", ", errors)}");
        Console.WriteLine($"projection error {layout} {kind}: {string.Join(", ", errors.Select(e => e.ToString("F3")))}");
    }

    [Fact]
    public void CheckpointsFromARunUseTheSidecarLearningRates()
    {
        torch.manual_seed(TestSeed.For());
        using var dir = new TempDir();
        var spec = new ModelSpec("logreg", 1, 2, 2, 3);
        var lrs = new[] { 0.1, 0.025 };
        var models = new List<nn.Module<Tensor, Tensor>>();
        for (int e = 1; e <= 2; e++)
        {
            var m = spec.Create();
            models.Add(m);
            Checkpoint.Save(m, Path.Combine(dir.Path, $"epoch-{e:D4}.safetensors"),
                new CheckpointInfo { Epoch = e, LearningRate = lrs[e - 1], Model = spec, DataFingerprint = "x" });
        }
        var cps = TracInCheckpoint.FromRun(dir.Path);
        Assert.Equal(lrs, cps.Select(c => c.StepSize));
        Assert.All(cps, c => Assert.NotNull(c.Source));
        Assert.Equal(new[] { 1.0, 1.0 }, TracInCheckpoint.FromRun(dir.Path, _ => 1.0).Select(c => c.StepSize));
        Assert.Single(TracInCheckpoint.FromRun(dir.Path, select: c => c.Info.Epoch == 2));

        var data = new TensorPairDataset(torch.randn(6, 1, 2, 2), torch.randint(0, 3, new long[] { 6 }));
        var task = new ClassificationTask();
        using var fromRun = new TracInCP(cps, task, Quiet);
        var manual = OracleScores(models.Select((m, i) => new TracInCheckpoint(m, lrs[i])).ToList(), task, data, data);
        Assert.True(RelErr(fromRun.PairwiseMatrix(data, data), manual) < 1e-5);
        Assert.Throws<InfluenceSharpException>(() => new TracInCP(new[] { new TracInCheckpoint(models[0], 0) }));
    }
}
