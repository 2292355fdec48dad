using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Methods;

/// <summary>A tiny float64 conv net with BatchNorm in training mode (smooth activations, so finite
/// differences of training are accurate).</summary>
public sealed class BnConvNet : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;
    private readonly BatchNorm2d bn;
    private readonly Linear fc;

    public BnConvNet(int classes) : base(nameof(BnConvNet))
    {
        conv = Conv2d(1, 3, 3, padding: 1);
        bn = BatchNorm2d(3);
        fc = Linear(3 * 3 * 3, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = functional.tanh(bn.call(conv.call(x)));
        x = functional.avg_pool2d(x, 2);
        return fc.call(x.flatten(1));
    }
}

/// <summary>Unrolled attribution against finite differences and exact removal of replayed training.</summary>
public class UnrolledTests
{
    const int Classes = 3;

    /// <summary>Gaussian inputs labelled by a random linear teacher with some label noise.</summary>
    static FloatDataset Data(int n, int[] shape, int seed)
    {
        var rng = new Random(seed);
        int d = shape.Aggregate(1, (a, b) => a * b);
        var x = new float[n * d];
        for (int i = 0; i < x.Length; i++) x[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - rng.NextDouble())) * Math.Cos(2 * Math.PI * rng.NextDouble()));
        var teacher = Enumerable.Range(0, Classes * d).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var y = new int[n];
        for (int i = 0; i < n; i++)
        {
            int best = 0; double bestV = double.NegativeInfinity;
            for (int c = 0; c < Classes; c++)
            {
                double v = 0;
                for (int j = 0; j < d; j++) v += teacher[c * d + j] * x[i * d + j];
                if (v > bestV) { bestV = v; best = c; }
            }
            y[i] = rng.NextDouble() < 0.15 ? rng.Next(Classes) : best;
        }
        return new FloatDataset($"synthetic{seed}", x, shape, y, Classes);
    }

    static readonly TrainOptions Recipe = new()
    {
        Epochs = 4, BatchSize = 8, LearningRate = 0.2, Momentum = 0.9, WeightDecay = 0.01,
        Schedule = LrSchedule.OneCycle, Seed = 5,
    };

    static Func<Module<Tensor, Tensor>> Factory(bool conv) => () =>
    {
        torch.manual_seed(11);
        Module<Tensor, Tensor> m = conv ? new BnConvNet(Classes) : new TwoLayerMlp(16, 8, Classes);
        m.to(ScalarType.Float64);
        if (conv) Oracles.RandomiseBatchNorm(m);
        return m;
    };

    static (FloatDataset Train, FloatDataset Queries) Problem(bool conv) =>
        conv ? (Data(36, new[] { 1, 6, 6 }, 1), Data(4, new[] { 1, 6, 6 }, 2))
             : (Data(36, new[] { 16 }, 1), Data(4, new[] { 16 }, 2));

    /// <summary>Query losses [Q] after replaying the run with example weights w.</summary>
    static double[] TrainAndMeasure(Func<Module<Tensor, Tensor>> factory, LabeledDataset train, ReplayPlan plan, double[] w, LabeledDataset queries)
    {
        using var model = factory();
        using (var replay = new SgdReplay(model, train, plan, w)) replay.RunTo(plan.Steps);
        model.eval();
        using var noGrad = no_grad();
        var idx = Enumerable.Range(0, queries.Count).ToArray();
        var logits = model.forward(queries.Inputs(idx).to_type(ScalarType.Float64));
        return functional.cross_entropy(logits, queries.Targets(idx), reduction: Reduction.None).data<double>().ToArray();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DerivativeEqualsCentralFiniteDifferenceOfReplayedTraining(bool conv)
    {
        var (train, queries) = Problem(conv);
        var plan = ReplayPlan.For(Recipe, train.Count);
        Assert.Equal(20, plan.Steps);
        // Segments of 3 steps (not dividing 20) and query batches of 3 (4 queries: 3 + 1).
        var method = new UnrolledAttribution(Factory(conv), train, plan, options: new UnrolledOptions { SegmentSteps = 3, QueryBatch = 3 });
        using var d = method.Derivatives(queries);
        Assert.Equal(new long[] { queries.Count, train.Count }, d.shape);
        const double eps = 1e-5;
        foreach (int i in new[] { 0, 7, 22, 35 })
        {
            var w = Enumerable.Repeat(1.0, train.Count).ToArray();
            w[i] = 1 + eps;
            var plus = TrainAndMeasure(Factory(conv), train, plan, w, queries);
            w[i] = 1 - eps;
            var minus = TrainAndMeasure(Factory(conv), train, plan, w, queries);
            for (int q = 0; q < queries.Count; q++)
            {
                double fd = (plus[q] - minus[q]) / (2 * eps), exact = d[q, i].item<double>();
                Assert.True(Math.Abs(fd) > 1e-4, $"example {i}, query {q}: finite difference {fd} too small to compare");
                Assert.True(Math.Abs(exact - fd) <= 1e-6 * Math.Abs(fd), $"example {i}, query {q}: unrolled {exact:G12}, finite difference {fd:G12}");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DerivativePredictsExactRemovalOnAShortRun(bool conv)
    {
        var (train, queries) = Problem(conv);
        // Batches of 18: removing one example moves BatchNorm's batch statistics by about 1/18.
        var recipe = Recipe with { Epochs = 2, BatchSize = 18, LearningRate = 0.05 };
        var plan = ReplayPlan.For(recipe, train.Count);
        var method = new UnrolledAttribution(Factory(conv), train, plan);
        using var d = method.Derivatives(queries);
        var ones = Enumerable.Repeat(1.0, train.Count).ToArray();
        var full = TrainAndMeasure(Factory(conv), train, plan, ones, queries);
        // The second-order terms: of the step sizes, and for BatchNorm of the batch moments' 1/Σw
        // (dropping one example of 18 moves a query's loss up to ~16% off the linear prediction here).
        // They scale with the size of the removal, not with each query's change, so the error is measured
        // against the removal's largest effect over the queries: a query it barely moves is held to the
        // same absolute error.
        double tolerance = conv ? 0.25 : 0.03;
        foreach (int i in new[] { 2, 13, 30 })
        {
            var w = (double[])ones.Clone();
            w[i] = 0;
            var removed = TrainAndMeasure(Factory(conv), train, plan, w, queries);
            var actual = Enumerable.Range(0, queries.Count).Select(q => removed[q] - full[q]).ToArray();
            double scale = actual.Max(Math.Abs);
            Assert.True(scale > 1e-4, $"removing {i} barely moves the queries");
            for (int q = 0; q < queries.Count; q++)
            {
                double predicted = -d[q, i].item<double>();
                Assert.True(Math.Abs(predicted - actual[q]) <= tolerance * scale, $"example {i}, query {q}: predicted change {predicted:G6}, actual {actual[q]:G6} (largest change {scale:G3})");
            }
        }
    }

    [Fact]
    public void PairwiseScoresAreMinusTheDerivativesAndSelfInfluenceIsTheOwnLossDerivative()
    {
        var (train, queries) = Problem(conv: false);
        var plan = ReplayPlan.For(Recipe with { Epochs = 2 }, train.Count);
        var method = new UnrolledAttribution(Factory(false), train, plan, options: new UnrolledOptions { QueryBatch = 16 });
        using var d = method.Derivatives(queries);
        using var scores = method.PairwiseMatrix(queries, train);
        Assert.True((scores.to_type(ScalarType.Float64) + d).abs().max().item<double>() < 1e-6);

        var self = method.SelfInfluence(train);
        const double eps = 1e-5;
        var one = train.Subset(new[] { 9 });
        var w = Enumerable.Repeat(1.0, train.Count).ToArray();
        w[9] = 1 + eps;
        double plus = TrainAndMeasure(Factory(false), train, plan, w, one)[0];
        w[9] = 1 - eps;
        double minus = TrainAndMeasure(Factory(false), train, plan, w, one)[0];
        double fd = -(plus - minus) / (2 * eps);
        Assert.True(fd > 0, $"up-weighting example 9 should lower its own loss ({fd})");
        Assert.True(Math.Abs(self[9] - fd) <= 1e-6 * Math.Abs(fd), $"self-influence {self[9]:G12}, finite difference {fd:G12}");
    }
    [Fact]
    public void StoredDerivativesAreReadBackInsteadOfRecomputed()
    {
        var (train, queries) = Problem(conv: false);
        var plan = ReplayPlan.For(Recipe with { Epochs = 2 }, train.Count);
        string dir = Path.Combine(Path.GetTempPath(), $"unrolled-store-{Guid.NewGuid():N}");
        try
        {
            var options = new UnrolledOptions { StoreDirectory = dir };
            using var first = new UnrolledAttribution(Factory(false), train, plan, options: options).PairwiseMatrix(queries, train);
            Assert.Single(Directory.GetFiles(dir, "derivatives-*.safetensors"));
            // A second method that cannot replay the run (its model builder throws) must read the stored derivatives.
            Func<Module<Tensor, Tensor>> broken = () => throw new InvalidOperationException("recomputed");
            using var second = new UnrolledAttribution(broken, train, plan, options: options).PairwiseMatrix(queries, train);
            Assert.Equal(0, (first - second).abs().max().item<float>());
            // Another query set is not served from the first one's file.
            var other = queries.Subset(new[] { 0, 1 });
            Assert.Throws<InvalidOperationException>(() => new UnrolledAttribution(broken, train, plan, options: options).PairwiseMatrix(other, train).Dispose());
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, true); }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WeightedQueriesTakeOneReversePassAndEqualTheWeightedPerQueryDerivatives(bool conv)
    {
        var (train, queries) = Problem(conv);
        var plan = ReplayPlan.For(Recipe with { Epochs = 2 }, train.Count);
        // Query batches of 2: the per-query derivatives of the 4 queries take two passes.
        var method = new UnrolledAttribution(Factory(conv), train, plan, options: new UnrolledOptions { SegmentSteps = 3, QueryBatch = 2 });
        using var d = method.Derivatives(queries);
        Assert.Equal(2, method.ReversePasses);
        // Mixed signs and a zero weight (that query is not measured).
        var weights = new[] { 0.7, -1.3, 0.0, 2.1 };
        var expected = new double[train.Count];
        for (int i = 0; i < train.Count; i++)
            for (int q = 0; q < queries.Count; q++) expected[i] -= weights[q] * d[q, i].item<double>();
        double scale = expected.Max(Math.Abs);
        Assert.True(scale > 1e-3, $"weighted scores too small to compare ({scale})");

        // Curation's entry point dispatches to the one-pass weighted derivative.
        var got = ValidationAttribution.Scores(method, queries, train, weights, chunkSize: 1);
        Assert.Equal(3, method.ReversePasses);
        for (int i = 0; i < train.Count; i++)
            Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-10 * scale, $"example {i}: weighted {got[i]:G17}, per-query sum {expected[i]:G17}");

        // A partition of the training set gets its own rows, from one more pass.
        var part = new[] { 30, 4, 17 };
        var sub = method.WeightedScores(queries, weights, new SubsetDataset(train, part));
        Assert.Equal(4, method.ReversePasses);
        for (int j = 0; j < part.Length; j++) Assert.True(Math.Abs(sub[j] - expected[part[j]]) <= 1e-10 * scale);
        Assert.Throws<InfluenceSharpException>(() => method.WeightedScores(queries, new[] { 1.0 }, train));
    }
}
