using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Methods;

/// <summary>Memory-bounded per-example conv gradients: the slices of a batch, the position-Gram
/// squared norms and TracIn's factored conv segments against float64 per-example backward loops,
/// with budgets small enough to force one example per slice.</summary>
public class ConvMemoryBoundTests
{
    /// <summary>Two convs: conv1 with many positions (T = 16, explicit by cost) and conv2 with few
    /// positions against its width (T = 4, 16·(32+145) ≤ 32·145: factored by cost), then a Linear.</summary>
    public sealed class WideConvNet : Module<Tensor, Tensor>
    {
        private readonly Conv2d conv1, conv2;
        private readonly Linear fc;

        public WideConvNet() : base(nameof(WideConvNet))
        {
            conv1 = Conv2d(2, 16, 3, padding: 1);
            conv2 = Conv2d(16, 32, 3);
            fc = Linear(32 * 2 * 2, 3);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            x = functional.tanh(conv1.call(x));
            x = functional.tanh(conv2.call(x));
            return fc.call(x.flatten(1));
        }
    }

    static TensorPairDataset Data(int n, params long[] shape) =>
        new(torch.randn(new[] { (long)n }.Concat(shape).ToArray(), dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));

    static double RelErr(Tensor a, Tensor b) =>
        ((a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).norm() / b.to(ScalarType.Float64).norm()).item<double>();

    static List<TracInCheckpoint> Checkpoints(int c, Func<Module<Tensor, Tensor>> make)
    {
        var rng = TestSeed.Random();
        return Enumerable.Range(0, c).Select(_ => new TracInCheckpoint(make().to(ScalarType.Float64), 0.01 + rng.NextDouble())).ToList();
    }

    [Theory]
    [InlineData(false, 1L << 30)]
    [InlineData(true, 1L << 30)]
    [InlineData(false, 1L)]          // one example per slice
    [InlineData(true, 1L)]
    public void SquaredNormsOfConvLayersEqualPerExampleBackwardLoops(bool gram, long budget)
    {
        torch.manual_seed(TestSeed.For());
        var model = new WideConvNet().to(ScalarType.Float64);
        var layers = TrackedLayer.Find(model);
        var data = Data(6, 2, 4, 4);
        var task = new ClassificationTask();
        var oracle = Oracles.PerExampleGradients(model, layers, data, task.TrainLoss);
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, data.Count).ToArray();
        var y = data.Targets(idx);
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => task.TrainLoss(l, y));
        long offset = 0;
        foreach (var lb in lbs)
        {
            var expected = oracle.narrow(1, offset, lb.Layer.NumParams).square().sum(1);
            offset += lb.Layer.NumParams;
            var got = lb.SquaredNorms(budget, gram);
            Assert.True(RelErr(got, expected) < 1e-12, $"{lb.Layer.Name}: relative error {RelErr(got, expected)} ({TestSeed.Describe()})");
            // Slices cover the batch in order, each within the budget (at least one example).
            var slices = lb.Chunks(budget).ToList();
            Assert.Equal(lb.BatchSize, slices.Sum(c => c.BatchSize));
            if (budget == 1 && !lb.RankOne) Assert.All(slices, c => Assert.Equal(1, c.BatchSize));
            var rebuilt = torch.cat(slices.Select(c => c.PerExample()).ToArray(), 0).reshape(lb.BatchSize, -1);
            Assert.True(RelErr(rebuilt, oracle.narrow(1, offset - lb.Layer.NumParams, lb.Layer.NumParams)) < 1e-12);
        }
        // The cost rule: conv1 (T = 16, 16×19) explicit, conv2 (T = 4, 32×145) through the Gram matrices.
        Assert.False(lbs[0].GramCheaper);
        Assert.True(lbs[1].GramCheaper);
    }

    [Theory]
    [InlineData(TracInConvForm.Auto, 1L << 30)]
    [InlineData(TracInConvForm.Auto, 1L)]
    [InlineData(TracInConvForm.Explicit, 1L)]
    [InlineData(TracInConvForm.Factored, 1L)]
    [InlineData(TracInConvForm.Factored, 1L << 30)]
    public void TracInOnConvLayersEqualsPerExampleBackwardLoopsWithinAnyBudget(TracInConvForm form, long budget)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(2, () => new WideConvNet());
        var train = Data(9, 2, 4, 4);
        var queries = Data(4, 2, 4, 4);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        using var tracin = new TracInCP(cps, task, new TracInOptions { TrainBatchSize = 5, QueryBatchSize = 3, BlockSize = 7, ConvForm = form, MemoryBytes = budget });
        Tensor oracle = torch.zeros(queries.Count, train.Count, dtype: ScalarType.Float64);
        Tensor oracleSelf = torch.zeros(train.Count, dtype: ScalarType.Float64);
        foreach (var cp in cps)
        {
            var ls = TrackedLayer.Find(cp.Model);
            var gq = Oracles.PerExampleGradients(cp.Model, ls, queries, task.QueryMeasure);
            var gz = Oracles.PerExampleGradients(cp.Model, ls, train, task.TrainLoss);
            oracle = oracle + cp.StepSize * gq.matmul(gz.mT);
            oracleSelf = oracleSelf + cp.StepSize * gz.square().sum(1);
        }
        var self = torch.tensor(tracin.SelfInfluence(train));
        Assert.True(RelErr(self, oracleSelf) < 1e-10, $"self: relative error {RelErr(self, oracleSelf)} ({TestSeed.Describe()})");
        var scores = tracin.PairwiseMatrix(queries, train);
        Assert.True(RelErr(scores, oracle) < 1e-6, $"pairwise: relative error {RelErr(scores, oracle)} ({TestSeed.Describe()})");
        // In float64 the feature rows give the scores to float64 precision, self-influence from the
        // stored rows included; the inner-product rows (index) too.
        var f = tracin.TrainFeatures(train)["features"];
        var qf = tracin.QueryFeatures(queries)["features"];
        var layout = ((TracInGradientFeaturizer)tracin.Featurizer).Layout;
        Assert.True(RelErr(layout.Pairwise(qf, f), oracle) < 1e-12);
        Assert.True(RelErr(layout.Self(f), oracleSelf) < 1e-12);
        Assert.True(RelErr(layout.Expand(qf, weighted: false).matmul(layout.Expand(f, weighted: true).mT), oracle) < 1e-12);
        // conv2 is factored (T = 4) unless the explicit form is forced; conv1 only when forced.
        var conv = layout.Segments.Where(s => s.Checkpoint == 0).Take(2).ToArray();
        bool conv1Factored = form == TracInConvForm.Factored, conv2Factored = form != TracInConvForm.Explicit;
        Assert.Equal(conv1Factored ? 16 : 1, conv[0].Positions);
        Assert.Equal(conv2Factored ? 4 : 1, conv[1].Positions);
        Assert.Equal(conv2Factored ? 4 * (32 + 145) : 32 * 145, conv[1].Width);
        // A budget below one row computes features one example at a time, with the same scores.
        if (budget == 1) Assert.Equal(9, f.shape[0]);
    }

    [Fact]
    public void FactoredTracInRefusesInputsOfAnotherSize()
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(1, () => new WideConvNet());
        using var tracin = new TracInCP(cps, null, new TracInOptions { TrainBatchSize = 4 });
        tracin.TrainFeatures(Data(3, 2, 4, 4));
        var ex = Assert.Throws<InfluenceSharpException>(() => tracin.QueryFeatures(Data(2, 2, 6, 6)));
        Assert.Contains("[2, 6, 6]", ex.Message);
    }

    [Fact]
    public void NormalisedTracInSelfInfluenceFromLayerBatchesIsTheStepSum()
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(3, () => new WideConvNet());
        var train = Data(5, 2, 4, 4);
        using var tracin = new TracInCP(cps, null, new TracInOptions { TrainBatchSize = 2, Normalize = true, MemoryBytes = 1 });
        var expected = cps.Sum(c => c.StepSize);
        Assert.All(tracin.SelfInfluence(train), v => Assert.Equal(expected, v, 12));
    }

    /// <summary>EK-FAC's eigenvalue pass, self-influence and pairwise scores with a budget of one
    /// example per slice equal the explicit formulas from per-example backward loops.</summary>
    [Fact]
    public void EkfacOnConvLayersWithinATinyBudgetEqualsExplicitFormulas()
    {
        torch.manual_seed(TestSeed.For());
        var model = new ConvNet().to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(13, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { 13 }));
        var queries = new TensorPairDataset(torch.randn(3, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { 3 }));
        var task = new ClassificationTask();
        var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = 6, MemoryBytes = 1 }).Fit(train)!;
        var layers = TrackedLayer.Find(model);
        Oracles.AssertEkfacLambdas(model, layers, factors, train, task.TrainLoss, rtol: 1e-8);
        const double damping = 1e-3;
        var f = new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = damping, TrainBatchSize = 6, QueryBatchSize = 2, MemoryBytes = 1 });
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
        long offset = 0;
        var explicitSelf = torch.zeros(train.Count, dtype: ScalarType.Float64);
        var explicitPairs = torch.zeros(queries.Count, train.Count, dtype: ScalarType.Float64);
        foreach (var (layer, lf) in layers.Zip(factors.Layers))
        {
            var g = gz.narrow(1, offset, layer.NumParams).reshape(-1, layer.Out, layer.In);
            var q = gq.narrow(1, offset, layer.NumParams).reshape(-1, layer.Out, layer.In);
            offset += layer.NumParams;
            var w = lf.Lambda! + damping;
            explicitSelf += (lf.QS!.mT.matmul(g).matmul(lf.QA!).square() / w).sum(new long[] { 1, 2 });
            var rq = (lf.QS!.mT.matmul(q).matmul(lf.QA!) / w).reshape(queries.Count, -1);
            var rz = lf.QS!.mT.matmul(g).matmul(lf.QA!).reshape(train.Count, -1);
            explicitPairs += rq.matmul(rz.mT);
        }
        Assert.Equal(Oracles.Flat(explicitSelf), f.SelfInfluence(train), new ToleranceComparer(1e-8));
        var pairs = f.PairwiseMatrix(queries, train);
        Assert.True(RelErr(pairs, explicitPairs) < 1e-6, $"pairwise: relative error {RelErr(pairs, explicitPairs)} ({TestSeed.Describe()})");
    }
}

public class EkfacCaptureCacheTests
{
    /// <summary>The eigenvalue pass reusing the covariance pass's layer batches (all of them, a
    /// prefix that fits a small budget, or none) gives the same factors, also with the true Fisher's
    /// sampled labels and several partitions; and the factors match the float64 oracle.</summary>
    [Theory]
    [InlineData(FisherType.True)]
    [InlineData(FisherType.Empirical)]
    public void CachedCapturesGiveTheSameFactorsAsRecomputedOnes(FisherType fisher)
    {
        torch.manual_seed(TestSeed.For());
        var model = new ConvNet().to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(23, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { 23 }));
        var task = new ClassificationTask();
        Factors Fit(long cacheBytes) => new FactorFitter(model, task, new FactorOptions
        { Strategy = FactorStrategy.Ekfac, Fisher = fisher, TrainBatchSize = 4, PartitionSize = 10, Seed = 3, CaptureCacheBytes = cacheBytes }).Fit(train)!;
        var none = Fit(0);
        // Per example (16·19 + 16·3 + 16·27 + 16·4 + 65 + 6 + 6 + 4)·8 = 7,432 bytes: a batch of 4 is
        // 29.7 KB, partition 0 (10 examples) 74.3 KB. 100 KB caches partition 0 only; 50 KB fills up
        // inside partition 0 (which must then be recomputed whole: the true Fisher's labels).
        foreach (var budget in new[] { 1L << 30, 100_000L, 50_000L })
        {
            var cached = Fit(budget);
            foreach (var (a, b) in none.Layers.Zip(cached.Layers))
                Assert.True(a.Lambda!.allclose(b.Lambda!, rtol: 1e-12, atol: 1e-15), $"{a.Name}, budget {budget} ({TestSeed.Describe()})");
        }
        if (fisher == FisherType.Empirical)
            Oracles.AssertEkfacLambdas(model, TrackedLayer.Find(model), Fit(1L << 30), train, task.TrainLoss, rtol: 1e-8);
    }

    /// <summary>Counts the examples whose inputs the fit asks for: the model runs once per example
    /// where the cache serves the eigenvalue pass, twice where it does not.</summary>
    private sealed class CountingDataset(IDataset inner) : IDataset
    {
        public long InputsRead;
        public int Count => inner.Count;
        public Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null) { InputsRead += indices.Length; return inner.Inputs(indices, device); }
        public Tensor Targets(ReadOnlySpan<int> indices, Device? device = null) => inner.Targets(indices, device);
        public string Fingerprint() => inner.Fingerprint();
    }

    /// <summary>The cache is what spares the eigenvalue pass its forward passes (so the test above
    /// compares two different paths), whole partitions only, and the fit into a directory leaves no
    /// cache file behind.</summary>
    [Fact]
    public void TheCacheSparesTheSecondPassAndLeavesNoFile()
    {
        torch.manual_seed(TestSeed.For());
        var model = new ConvNet().to(ScalarType.Float64);
        var train = new CountingDataset(new TensorPairDataset(torch.randn(23, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { 23 })));
        using var dir = new TempDir();
        long Reads(long cacheBytes, string? into = null)
        {
            train.InputsRead = 0;
            new FactorFitter(model, new ClassificationTask(), new FactorOptions
            { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 4, PartitionSize = 10, CaptureCacheBytes = cacheBytes }).Fit(train, into);
            return train.InputsRead;
        }
        Assert.Equal(23, Reads(1L << 30));
        Assert.Equal(46, Reads(0));
        Assert.Equal(23 + 13, Reads(100_000));          // partition 0 (10 examples, 74.3 KB) cached, 10-22 recomputed
        Assert.Equal(23, Reads(1L << 30, dir.Path));
        Assert.Empty(Directory.GetFiles(dir.Path, ".capture-cache-*", SearchOption.AllDirectories));
    }

    /// <summary>Recorded batches come back equal (dense conv patches and one-hot ids, float64 and
    /// int64), held in a file that is already unlinked, not in the directory.</summary>
    [Fact]
    public void RecordedBatchesComeBackFromAnUnlinkedFile()
    {
        torch.manual_seed(TestSeed.For());
        using var dir = new TempDir();
        var layers = TrackedLayer.Find(Sequential(("conv", Conv2d(2, 3, 3)), ("emb", Embedding(7, 3))));
        var conv = layers.Single(l => l.IsConv);
        var emb = layers.Single(l => l.OneHotInputs);
        using var cache = new CaptureCache(1L << 20, dir.Path);
        var dense = new LayerBatch(conv, torch.randn(4, 9, 18, dtype: ScalarType.Float64), torch.randn(4, 9, 3, dtype: ScalarType.Float64));
        var oneHot = LayerBatch.OneHot(emb, torch.randint(0, 7, new long[] { 4, 5 }), torch.randn(4, 5, 3, dtype: ScalarType.Float64));
        cache.Record((0, 0), new[] { dense, oneHot });
        cache.Record((0, 4), new[] { dense.Map(t => t.flip(0)), oneHot.Map(t => t.flip(0)) });
        Assert.Equal(2 * (4 * 9 * 18 + 4 * 9 * 3 + 4 * 5 * 3) * 8 + 2 * 4 * 5 * 8, cache.Bytes);
        Assert.Empty(Directory.GetFiles(dir.Path));
        Assert.Null(cache.Take((0, 0), CPU));            // still recording
        cache.StopRecording();
        var second = cache.Take((0, 4), CPU)!;
        var first = cache.Take((0, 0), CPU)!;
        static bool Same(Tensor x, Tensor y) => x.shape.SequenceEqual(y.shape) && x.dtype == y.dtype && x.eq(y).all().item<bool>();
        Assert.True(Same(first[0].A, dense.A) && Same(first[0].G, dense.G) && !first[0].IsOneHot);
        Assert.True(first[1].IsOneHot && Same(first[1].Ids!, oneHot.Ids!) && Same(first[1].G, oneHot.G));
        Assert.True(Same(second[0].A, dense.A.flip(0)) && Same(second[1].Ids!, oneHot.Ids!.flip(0)));
        Assert.Equal(0, cache.Bytes);
        Assert.Null(cache.Take((0, 0), CPU));            // handed out once
    }
}
