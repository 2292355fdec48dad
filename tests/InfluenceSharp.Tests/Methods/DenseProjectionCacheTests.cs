using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>The dense projection's cache: partly cached (the rows beyond the budget regenerated per
/// batch, chunks straddling the cache's end) and fully cached give the explicit product x·P.</summary>
public class DenseProjectionCacheTests
{
    [Theory]
    [InlineData(ProjectionKind.Rademacher)]
    [InlineData(ProjectionKind.Gaussian)]
    public void PartlyCachedEqualsTheExplicitProduct(ProjectionKind kind)
    {
        int seed = TestSeed.For();
        var (capture, layers, lbs, full) = Oracles.ConvLayerBatches(seed);
        using var _ = capture;
        const int k = 24;
        var o = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = kind, Dim = k, Seed = seed };
        long d = full.shape[1];
        var p = torch.tensor(ProjectionMatrix.Full(kind, CounterRandom.Key(seed, CounterRandom.Mix(0) ^ CounterRandom.Hash("dense")), (int)d, k),
            new long[] { d, k }).to(ScalarType.Float64) / Math.Sqrt(k);
        var expected = full.matmul(p);
        // Budgets: a third of P (a layer's chunk straddles the cache's end), all of P, and the automatic default.
        foreach (long? bytes in new long?[] { d / 3 * k * 8, d * k * 8, null })
        {
            using var proj = new GradientProjector(layers, o with { CacheBytes = bytes, ChunkElements = 300 }, 0, false, ScalarType.Float64, CPU);
            Assert.Equal(bytes is null ? d : bytes.Value / (k * 8), proj.CachedRows);
            Assert.Equal(proj.CachedRows == d, proj.IsCached);
            var got = proj.Project(lbs);
            Assert.True(got.allclose(expected, rtol: 1e-10, atol: 1e-12), $"seed {seed}, cache {bytes}: max diff {(got - expected).abs().max().item<double>()}");
        }
    }

    /// <summary>Float32 on the CPU generates P straight into the tensor's storage: the same bits as the
    /// reference rows from <see cref="ProjectionMatrix.Rows"/> scaled by 1/√k in float32, at any row
    /// offset, for both kinds.</summary>
    [Theory]
    [InlineData(ProjectionKind.Rademacher)]
    [InlineData(ProjectionKind.Gaussian)]
    public void Float32RowsAreTheReferenceMatrixScaled(ProjectionKind kind)
    {
        int seed = TestSeed.For();
        var (capture, layers, _, full) = Oracles.ConvLayerBatches(seed);
        using var _ = capture;
        const int k = 37;
        var o = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = kind, Dim = k, Seed = seed, CacheBytes = 0 };
        using var proj = new GradientProjector(layers, o, 3, false, ScalarType.Float32, CPU);
        ulong key = CounterRandom.Key(seed, CounterRandom.Mix(3) ^ CounterRandom.Hash("dense"));
        foreach (var (start, count) in new[] { (0L, 5), (7L, 50), (full.shape[1] - 3, 3) })
        {
            using var got = proj.GenerateRows(start, count);
            using var reference = torch.tensor(ProjectionMatrix.Rows(kind, key, start, count, k), new long[] { count, k });
            using var scale = (1 / Math.Sqrt(k)).ToScalar();
            reference.mul_(scale);
            Assert.Equal(ScalarType.Float32, got.dtype);
            Assert.True(got.allclose(reference, 0, 0), $"seed {seed}, rows {start}..{start + count}: max diff {(got - reference).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void AutomaticCacheIsAQuarterOfTheMemoryAndAtLeast512MiB()
    {
        long auto = GradientProjector.AutomaticCacheBytes(CPU);
        Assert.True(auto >= 512L << 20);
        Assert.True(auto >= GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);
    }
}
