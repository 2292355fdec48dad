using System.Security.Cryptography;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>Seeded projection matrices (shared by TracIn's random projection and TRAK).</summary>
public class TracInProjectionTests
{
    static string Sha256(float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(4 * i), values[i]);
        return Convert.ToHexStringLower(SHA256.HashData(bytes));
    }

    /// <summary>The constants were computed once, by this code: any change of the generator, on any
    /// machine or libtorch version, changes the bytes and fails here.</summary>
    [Fact]
    public void SameSeedGivesTheSameProjectionBytesEverywhere()
    {
        ulong key = CounterRandom.Key(42, 7);
        var rademacher = ProjectionMatrix.Full(ProjectionKind.Rademacher, key, 37, 100);
        var gaussian = ProjectionMatrix.Full(ProjectionKind.Gaussian, key, 29, 33);
        var orthogonal = ProjectionMatrix.Full(ProjectionKind.Orthogonal, key, 20, 48);
        Assert.Equal("551810758a2612e1d0fbb0ebff6e25927a2ee46a333681c976794b4180dd2a3a", Sha256(rademacher));
        Assert.Equal("3e7feb9759414f7513aa005c88c21c372d145cf448367fd0766323ddf3f34b4b", Sha256(gaussian));
        Assert.Equal("6e1557d6dd841577a216e15dc25809f03cc8138f0851ee7636e33b905e650977", Sha256(orthogonal));
        // Another seed or stream gives another matrix.
        Assert.NotEqual(Sha256(rademacher), Sha256(ProjectionMatrix.Full(ProjectionKind.Rademacher, CounterRandom.Key(43, 7), 37, 100)));
        Assert.NotEqual(Sha256(rademacher), Sha256(ProjectionMatrix.Full(ProjectionKind.Rademacher, CounterRandom.Key(42, 8), 37, 100)));
        // Rows generated in chunks are the rows of the whole matrix.
        var chunk = ProjectionMatrix.Rows(ProjectionKind.Gaussian, key, 11, 7, 33);
        Assert.Equal(gaussian.AsSpan(11 * 33, 7 * 33).ToArray(), chunk);
    }

    [Fact]
    public void PortableLogAndSineMatchTheRuntimeMathLibrary()
    {
        var rng = TestSeed.Random();
        for (int i = 0; i < 20000; i++)
        {
            double x = i < 10 ? Math.Pow(2, -i * 5) : rng.NextDouble() * 10 + 1e-300;
            double lx = DetMath.Log(x);
            Assert.True(Math.Abs(lx - Math.Log(x)) <= 4e-16 * Math.Max(1, Math.Abs(Math.Log(x))), $"log({x})");
            long k = rng.NextInt64(1L << 53);
            var (c, s) = DetMath.CosSin2Pi(k);
            double angle = 2 * Math.PI * (k / (double)(1L << 53));
            Assert.True(Math.Abs(c - Math.Cos(angle)) < 2e-15 && Math.Abs(s - Math.Sin(angle)) < 2e-15, $"angle {angle}");
        }
    }

    [Fact]
    public void EntriesHaveTheirDistribution()
    {
        ulong key = CounterRandom.Key(TestSeed.For(), 1);
        var g = ProjectionMatrix.Full(ProjectionKind.Gaussian, key, 400, 500).Select(v => (double)v).ToArray();
        double mean = g.Average(), var = g.Select(v => (v - mean) * (v - mean)).Average();
        double kurt = g.Select(v => Math.Pow(v - mean, 4)).Average() / (var * var);
        Assert.True(Math.Abs(mean) < 0.01 && Math.Abs(var - 1) < 0.02 && Math.Abs(kurt - 3) < 0.1, $"mean {mean} var {var} kurtosis {kurt}");
        var r = ProjectionMatrix.Full(ProjectionKind.Rademacher, key, 400, 500);
        Assert.All(r, v => Assert.True(v == 1f || v == -1f));
        Assert.True(Math.Abs(r.Average(v => (double)v)) < 0.01);
        // Orthogonal: wide → P Pᵀ = cols·I; tall → Pᵀ P = rows·I.
        var wide = torch.tensor(ProjectionMatrix.Full(ProjectionKind.Orthogonal, key, 12, 30), new long[] { 12, 30 }).to(ScalarType.Float64);
        Assert.True(wide.matmul(wide.mT).allclose(30 * torch.eye(12, dtype: ScalarType.Float64), atol: 1e-4));
        var tall = torch.tensor(ProjectionMatrix.Full(ProjectionKind.Orthogonal, key, 30, 12), new long[] { 30, 12 }).to(ScalarType.Float64);
        Assert.True(tall.mT.matmul(tall).allclose(30 * torch.eye(12, dtype: ScalarType.Float64), atol: 1e-4));
    }

    /// <summary>A projection too large to cache is generated chunk by chunk on the fly: same result.</summary>
    [Theory]
    [InlineData(ProjectionKind.Rademacher)]
    [InlineData(ProjectionKind.Gaussian)]
    public void DenseProjectionChunkedOnTheFlyEqualsCached(ProjectionKind kind)
    {
        torch.manual_seed(TestSeed.For());
        var model = new ConvNet(3).to(ScalarType.Float64);
        var layers = TrackedLayer.Find(model);
        var data = new TensorPairDataset(torch.randn(6, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 6 }));
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, 6).ToArray();
        var y = data.Targets(idx);
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => new ClassificationTask().TrainLoss(l, y));
        var o = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = kind, Dim = 40, Seed = 3 };
        using var cached = new GradientProjector(layers, o, 0, false, ScalarType.Float64, CPU);
        using var onTheFly = new GradientProjector(layers, o with { CacheBytes = 0, ChunkElements = 500 }, 0, false, ScalarType.Float64, CPU);
        Assert.True(cached.IsCached); Assert.False(onTheFly.IsCached);
        var a = cached.Project(lbs); var b = onTheFly.Project(lbs);
        Assert.True(a.allclose(b, rtol: 1e-12, atol: 1e-14));
        // And it is the explicit product with the explicit matrix.
        var full = torch.cat(lbs.Select(lb => lb.PerExample().reshape(6, -1)).ToArray(), 1);
        var p = torch.tensor(ProjectionMatrix.Full(kind, CounterRandom.Key(3, CounterRandom.Mix(0) ^ CounterRandom.Hash("dense")), (int)full.shape[1], 40),
            new long[] { full.shape[1], 40 }).to(ScalarType.Float64) / Math.Sqrt(40);
        Assert.True(a.allclose(full.matmul(p), rtol: 1e-10, atol: 1e-12));
    }
}
