using TorchSharp;
using static TorchSharp.torch;
using InfluenceSharp.Methods.InfluenceFunctions;
using Xunit;
using Xunit.Abstractions;

namespace InfluenceSharp.Tests.Methods;

public class SymmetricEigenTests(ITestOutputHelper output)
{
    // Every path (eigh, rescaled/shifted eigh, SVD) must return ascending eigenvalues and
    // orthonormal eigenvectors that rebuild the matrix: a rank-deficient PSD factor like a conv
    // layer's A fitted on fewer examples than its width.
    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void EveryAttemptRebuildsARankDeficientFactor(int attempt)
    {
        int seed = TestSeed.For($"eigen-{attempt}");
        output.WriteLine($"seed {seed} ({TestSeed.Describe($"eigen-{attempt}")})");
        var g = new torch.Generator((ulong)seed);
        var x = torch.randn(new long[] { 12, 30 }, dtype: ScalarType.Float64, generator: g) * 3.0;
        var m = x.mT.matmul(x) / 12.0;                                    // 30 × 30, rank 12
        var (vals, vecs) = SymmetricEigen.Decompose(m, "test factor", attempt);
        var rebuilt = vecs.matmul(torch.diag(vals)).matmul(vecs.mT);
        double err = (rebuilt - m).abs().max().item<double>() / m.abs().max().item<double>();
        Assert.True(err < 1e-8, $"attempt {attempt}: relative error {err:E2}, seed {seed}");
        Assert.True((vals[1..] - vals[..^1]).min().item<double>() >= -1e-9, "eigenvalues ascending");
        var gram = vecs.mT.matmul(vecs);
        Assert.True((gram - torch.eye(30, dtype: ScalarType.Float64)).abs().max().item<double>() < 1e-8, "orthonormal");
        var expected = torch.linalg.eigvalsh(m);
        Assert.True((vals - expected).abs().max().item<double>() < 1e-8 * expected.abs().max().item<double>(), "eigenvalues");
    }

    [Fact]
    public void NonFiniteFactorIsAClearError()
    {
        var m = torch.eye(4, dtype: ScalarType.Float64);
        m[1, 2] = torch.tensor(double.NaN, dtype: ScalarType.Float64);
        var e = Assert.Throws<InfluenceSharpException>(() => SymmetricEigen.Decompose(m, "layer fc1: activation covariance A"));
        Assert.Contains("layer fc1", e.Message);
        Assert.Contains("non-finite", e.Message);
    }
}
