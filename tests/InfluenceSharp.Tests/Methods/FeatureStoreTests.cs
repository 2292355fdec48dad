using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

public class FeatureStoreTests
{
    static TensorPairDataset Data(int n) =>
        new(torch.randn(n, 5, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));

    static List<TracInCheckpoint> Checkpoints(params double[] etas) =>
        etas.Select(e => new TracInCheckpoint(new TwoLayerMlp(5, 6, 3).to(ScalarType.Float64), e)).ToList();

    static FeatureMethod Method(string kind, IReadOnlyList<TracInCheckpoint> cps, string dir, int dim = 32) => kind switch
    {
        "tracin-fast" => new TracInCPFast(cps, null, new TracInFastOptions { StoreDirectory = dir, BlockSize = 8, TrainBatchSize = 3 }),
        "tracin-randproj" => new TracInCPFastRandProj(cps, null, new TracInRandProjOptions
        {
            StoreDirectory = dir, BlockSize = 8, TrainBatchSize = 3,
            Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Dim = dim, Seed = 4 },
        }),
        _ => new Trak(cps.Select(c => c.Model).ToList(), new TrakOptions
        {
            StoreDirectory = dir, BlockSize = 8, TrainBatchSize = 3,
            Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Dim = dim, Seed = 4 },
        }),
    };

    [Theory]
    [InlineData("tracin-fast")]
    [InlineData("tracin-randproj")]
    [InlineData("trak")]
    public void InterruptedStoreResumesWithOnlyTheMissingBlocksAndGivesIdenticalScores(string kind)
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(0.3, 0.1);
        var train = Data(30); var queries = Data(4);    // 4 blocks of 8, 8, 8, 6
        using var dir = new TempDir();
        string Block(int b) => Path.Combine(dir.Path, "blocks", $"{b:D5}.safetensors");

        // Shard 0 of 2 builds blocks 0 and 2 only.
        using (var m = Method(kind, cps, dir.Path)) Assert.Equal(2, m.BuildStore(train, new Shard(0, 2)));
        Assert.True(File.Exists(Block(0)) && File.Exists(Block(2)) && !File.Exists(Block(1)) && !File.Exists(Block(3)));

        // Scoring completes the store, then reuses it.
        Tensor reference; double[] refSelf;
        using (var m = Method(kind, cps, dir.Path))
        {
            reference = m.PairwiseMatrix(queries, train);
            refSelf = m.SelfInfluence(train);
            Assert.Equal(0, m.BuildStore(train));
        }
        using (var memory = Method(kind, cps, null!))       // no directory: streamed (TracIn) or in memory (TRAK)
            Assert.True(memory.PairwiseMatrix(queries, train).allclose(reference, rtol: 1e-6, atol: 1e-9), "stored and unstored scores differ");

        // "Interrupt": lose blocks 1 and 3. A new run recomputes exactly those.
        File.Delete(Block(1)); File.Delete(Block(3));
        var stamp0 = File.GetLastWriteTimeUtc(Block(0)); var stamp2 = File.GetLastWriteTimeUtc(Block(2));
        using (var m = Method(kind, cps, dir.Path))
        {
            Assert.Equal(new[] { 1, 3 }, m.OpenStore(train).Missing());
            Assert.Equal(2, m.BuildStore(train));
            Assert.True(TensorAssert.BitEqual(m.PairwiseMatrix(queries, train), reference));
            Assert.Equal(refSelf, m.SelfInfluence(train));
        }
        Assert.Equal(stamp0, File.GetLastWriteTimeUtc(Block(0)));
        Assert.Equal(stamp2, File.GetLastWriteTimeUtc(Block(2)));
        // A new query set is scored from the store without recomputing training features.
        using (var m = Method(kind, cps, dir.Path))
        {
            var other = Data(3);
            var s = m.PairwiseMatrix(other, train);
            Assert.Equal(new long[] { 3, 30 }, s.shape);
            Assert.DoesNotContain(m.Profiler.Stages, st => st.Name == "Compute Train Features");
        }
    }

    /// <summary>TracIn's stored blocks hold explicit gradients over every checkpoint; a block stays
    /// within the memory budget (fewer rows than asked), and its scores are the streamed ones.</summary>
    [Fact]
    public void TracInStoreBlocksStayWithinTheMemoryBudget()
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(0.3, 0.1);
        var train = Data(30); var queries = Data(4);
        using var dir = new TempDir();
        long rowBytes;
        using (var probe = new TracInCP(cps, null, new TracInOptions { TrainBatchSize = 3 }))
            rowBytes = probe.TrainFeatures(Data(2))["features"].shape[1] * sizeof(double);
        long budget = rowBytes * 7;
        using var stored = new TracInCP(cps, null, new TracInOptions { StoreDirectory = dir.Path, BlockSize = 4096, TrainBatchSize = 3, MemoryBytes = budget });
        var scores = stored.PairwiseMatrix(queries, train);
        Assert.Equal(7, stored.OpenStore(train).BlockSize);
        Assert.Equal(5, Directory.GetFiles(Path.Combine(dir.Path, "blocks")).Length);        // 7, 7, 7, 7, 2
        using var streamed = new TracInCP(cps, null, new TracInOptions { TrainBatchSize = 3 });
        Assert.True(streamed.PairwiseMatrix(queries, train).allclose(scores, rtol: 1e-9, atol: 1e-12), "stored and streamed scores differ");
        // The same store opened under a budget that would cap blocks at 3 rows keeps its 7-row blocks.
        using var smaller = new TracInCP(cps, null, new TracInOptions { StoreDirectory = dir.Path, BlockSize = 4096, TrainBatchSize = 3, MemoryBytes = rowBytes * 3 });
        Assert.True(smaller.PairwiseMatrix(queries, train).allclose(scores, rtol: 1e-9, atol: 1e-12), "scores from the reopened store differ");
        Assert.Equal(7, smaller.OpenStore(train).BlockSize);
    }

    [Fact]
    public void StoreRefusesOtherCheckpointsDataOrSettingsNamingTheField()
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(0.3, 0.1);
        var train = Data(20);
        using var dir = new TempDir();
        using (var m = Method("tracin-randproj", cps, dir.Path)) m.BuildStore(train);

        InfluenceSharpException Refused(Func<FeatureMethod> make, IDataset? data = null) => Assert.Throws<InfluenceSharpException>(() =>
        {
            using var m = make();
            m.BuildStore(data ?? train);
        });
        var other = Checkpoints(0.3, 0.1);
        var e = Refused(() => Method("tracin-randproj", new[] { cps[0], other[1] }, dir.Path));
        Assert.Contains("models[1]", e.Message); Assert.Contains("another checkpoint", e.Message);
        e = Refused(() => Method("tracin-randproj", cps.Take(1).ToList(), dir.Path));
        Assert.Contains("models (count)", e.Message);
        e = Refused(() => Method("tracin-randproj", new[] { cps[0], cps[1] with { StepSize = 0.2 } }, dir.Path));
        Assert.Contains("settings.step_sizes", e.Message);
        e = Refused(() => Method("tracin-randproj", cps, dir.Path, dim: 16));
        Assert.Contains("settings.projection_dim", e.Message);
        e = Refused(() => Method("tracin-randproj", cps, dir.Path), new TensorPairDataset(train.X + 1, train.Y));
        Assert.Contains("data_fingerprint", e.Message); Assert.Contains("manifest.json", e.Message);
        e = Refused(() => Method("trak", cps, dir.Path));
        Assert.Contains("method", e.Message);
        // The store itself is untouched by the refused runs.
        using (var m = Method("tracin-randproj", cps, dir.Path)) Assert.Equal(0, m.BuildStore(train));
    }

    [Fact]
    public void TrakKernelIsRecomputedWhenABlockIsRecomputed()
    {
        torch.manual_seed(TestSeed.For());
        var cps = Checkpoints(1);
        var train = Data(40);           // n ≥ k = 32: the k × k kernel path (n < k inverts through the Gram matrix, no kernel file)
        using var dir = new TempDir();
        string kernel = Path.Combine(dir.Path, "derived", "kernels.safetensors");
        double[] self;
        using (var m = Method("trak", cps, dir.Path)) self = m.SelfInfluence(train);
        Assert.True(File.Exists(kernel));
        File.Delete(Path.Combine(dir.Path, "blocks", "00001.safetensors"));
        using (var m = Method("trak", cps, dir.Path))
        {
            Assert.Equal(1, m.BuildStore(train));
            Assert.False(File.Exists(kernel));          // invalidated with the block
            Assert.Equal(self, m.SelfInfluence(train));
        }
        Assert.True(File.Exists(kernel));
        using (var m = Method("trak", cps, dir.Path))
        {
            Assert.Equal(self, m.SelfInfluence(train));
            Assert.DoesNotContain(m.Profiler.Stages, st => st.Name == "Fit TRAK Kernel");   // loaded, not refit
        }
    }
}
