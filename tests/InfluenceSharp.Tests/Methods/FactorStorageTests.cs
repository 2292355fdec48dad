using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

public class FactorStorageTests
{
    static (TwoLayerMlp, TensorPairDataset) Problem(int seed)
    {
        torch.manual_seed(seed);
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        return (model, new TensorPairDataset(torch.randn(70, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 70 })));
    }

    static FactorOptions Opts(FactorStrategy s = FactorStrategy.Ekfac) =>
        new() { Strategy = s, PartitionSize = 16, TrainBatchSize = 8, Seed = 3 };

    sealed class Collect(List<InfluenceSharp.Diagnostics.ProgressUpdate> list) : IProgress<InfluenceSharp.Diagnostics.ProgressUpdate>
    {
        public void Report(InfluenceSharp.Diagnostics.ProgressUpdate value) => list.Add(value);
    }

    static void AssertSame(Factors a, Factors b)
    {
        foreach (var (x, y) in a.Layers.Zip(b.Layers))
            foreach (var (k, t) in x.ToTensors())
                Assert.True(TensorAssert.BitEqual(t, y.ToTensors()[k]), k);
    }

    [Fact]
    public void InterruptedFitResumesToIdenticalFactorsAndShardsMerge()
    {
        var (model, train) = Problem(TestSeed.For());
        var task = new ClassificationTask();
        using var dir = new TempDir();
        var reference = new FactorFitter(model, task, Opts()).Fit(train)!;

        // Shard 0 of 2 runs first: its partitions are saved, nothing is merged yet.
        var fitter = new FactorFitter(model, task, Opts());
        Assert.Null(fitter.Fit(train, dir.Path, new Shard(0, 2)));
        Assert.False(File.Exists(Path.Combine(dir.Path, Factors.FactorsFile)));
        int saved = Directory.GetFiles(Path.Combine(dir.Path, "partials")).Length;
        Assert.Equal(3, saved);                 // partitions 0, 2, 4 of 5 (70 examples / 16)
        // "Interrupt": drop one finished partition; the unsharded run redoes only what is missing.
        File.Delete(Path.Combine(dir.Path, "partials", "covariance-00002.safetensors"));
        var updates = new List<InfluenceSharp.Diagnostics.ProgressUpdate>();
        var resumed = new FactorFitter(model, task, Opts() with { Progress = new Collect(updates) }).Fit(train, dir.Path)!;
        // Only the dropped covariance partition (16 examples) and the missing ones (1, 3) were computed.
        Assert.Equal(16 + 16 + 16, updates.First(u => u.Label == "fit covariance").Total);
        Assert.False(Directory.Exists(Path.Combine(dir.Path, "partials")));   // removed once the factors are saved
        AssertSame(reference, resumed);
        AssertSame(reference, Factors.Load(dir.Path, fitter.ManifestFor(train)));
        // Scores from loaded factors equal in-memory ones.
        var q = new TensorPairDataset(torch.randn(3, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 3 }));
        var s1 = new InfluenceFunction(model, task, reference, new ScoreOptions()).PairwiseMatrix(q, train);
        var s2 = new InfluenceFunction(model, task, Factors.Load(dir.Path), new ScoreOptions()).PairwiseMatrix(q, train);
        Assert.True(TensorAssert.BitEqual(s1, s2));
    }

    [Fact]
    public void FactorsFromAnotherCheckpointOrDataAreRefused()
    {
        var (model, train) = Problem(TestSeed.For());
        var task = new ClassificationTask();
        using var dir = new TempDir();
        var fitter = new FactorFitter(model, task, Opts(FactorStrategy.Kfac));
        var factors = fitter.Fit(train, dir.Path)!;

        var (other, _) = Problem(TestSeed.For() + 1);
        var e = Assert.Throws<InfluenceSharpException>(() => new InfluenceFunction(other, task, factors));
        Assert.Contains("another checkpoint", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => Factors.Load(dir.Path, new FactorFitter(other, task, Opts(FactorStrategy.Kfac)).ManifestFor(train)));
        Assert.Contains("model_fingerprint", e.Message);

        var otherData = new TensorPairDataset(train.X + 1, train.Y);
        e = Assert.Throws<InfluenceSharpException>(() => fitter.Fit(otherData, dir.Path));
        Assert.Contains("data_fingerprint", e.Message); Assert.Contains("manifest.json", e.Message);

        e = Assert.Throws<InfluenceSharpException>(() => new FactorFitter(model, task, Opts(FactorStrategy.Ekfac)).Fit(train, dir.Path));
        Assert.Contains("strategy", e.Message);

        var wider = new TwoLayerMlp(4, 6, 3).to(ScalarType.Float64);
        e = Assert.Throws<InfluenceSharpException>(() => new InfluenceFunction(wider, task, factors));
        Assert.Contains("another architecture", e.Message);
    }
}
