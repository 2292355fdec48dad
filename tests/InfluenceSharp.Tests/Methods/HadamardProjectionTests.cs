using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>The subsampled randomised Hadamard projection (SRHT): its implicit matrix is exactly
/// c·(S H D)ᵀ (orthogonal rows when nothing is subsampled, ±1 entries at unit scale), inner products
/// are unbiased and JL-accurate on random vectors, and it is deterministic per seed.</summary>
public class HadamardProjectionTests
{
    static GradientProjector Srht(IReadOnlyList<TrackedLayer> layers, int k, int seed, bool unit = false, ulong stream = 0) =>
        new(layers, new ProjectionOptions { Layout = ProjectionLayout.Hadamard, Dim = k, Seed = seed, ChunkElements = 1000 }, stream, unit, ScalarType.Float64, CPU);

    [Fact]
    public void WithoutSubsamplingTheMatrixIsOrthogonalWithHadamardEntries()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var layers = TrackedLayer.Find(nn.Sequential(("fc", nn.Linear(4, 5))));          // 5×5 = 25 parameters → D' = 32
        using var full = Srht(layers, 32, seed);
        var p = full.ProjectFlat(torch.eye(25, dtype: ScalarType.Float64));   // the implicit P [25, 32]
        Assert.True(p.matmul(p.mT).allclose(torch.eye(25, dtype: ScalarType.Float64), atol: 1e-12), $"seed {seed}: P Pᵀ != I");
        Assert.True(p.abs().allclose(torch.full(25, 32, 1 / Math.Sqrt(32), dtype: ScalarType.Float64), atol: 1e-12));
        // Unit-variance convention: entries ±1 whatever k.
        using var unit = Srht(layers, 7, seed, unit: true);
        var pu = unit.ProjectFlat(torch.eye(25, dtype: ScalarType.Float64));
        Assert.True(pu.abs().allclose(torch.ones(25, 7, dtype: ScalarType.Float64), atol: 1e-12));
        // Subsampled columns are columns of the full transform (same signs, same H), scaled by √(D'/k).
        using var sub = Srht(layers, 8, seed);
        var ps = sub.ProjectFlat(torch.eye(25, dtype: ScalarType.Float64)) / Math.Sqrt(32.0 / 8);
        for (int j = 0; j < 8; j++)
        {
            var col = ps.narrow(1, j, 1);
            Assert.True(Enumerable.Range(0, 32).Any(i => p.narrow(1, i, 1).allclose(col, atol: 1e-12)), $"column {j} is not a column of S H D");
        }
    }

    [Fact]
    public void InnerProductsAreUnbiasedOverSeeds()
    {
        int seed = TestSeed.For();
        var gen = new torch.Generator((ulong)seed);   // fresh vectors from the printed seed
        var layers = TrackedLayer.Find(nn.Sequential(("fc", nn.Linear(4, 5))));
        var x = torch.randn(new long[] { 2, 25 }, dtype: ScalarType.Float64, generator: gen);
        double truth = (x[0] * x[1]).sum().item<double>();
        const int reps = 600;
        var est = new double[reps];
        for (int r = 0; r < reps; r++)
        {
            using var proj = Srht(layers, 8, seed * 1000 + r);
            var phi = proj.ProjectFlat(x);
            est[r] = (phi[0] * phi[1]).sum().item<double>();
        }
        double mean = est.Average(), se = Math.Sqrt(est.Select(e => (e - mean) * (e - mean)).Sum() / (reps - 1) / reps);
        Assert.True(Math.Abs(mean - truth) < 4 * se + 1e-9, $"seed {seed}: mean estimate {mean} vs true {truth} (standard error {se})");
    }

    [Fact]
    public void InnerProductsAreJlAccurateAndDeterministic()
    {
        int seed = TestSeed.For();
        var gen = new torch.Generator((ulong)seed);
        var layers = TrackedLayer.Find(nn.Sequential(("fc", nn.Linear(300, 10))));        // 3,010 parameters → D' = 4,096
        const int k = 512;
        var x = torch.randn(new long[] { 12, 3010 }, dtype: ScalarType.Float64, generator: gen);
        using var proj = Srht(layers, k, seed);
        var phi = proj.ProjectFlat(x);
        var exact = x.matmul(x.mT); var approx = phi.matmul(phi.mT);
        var norms = exact.diagonal().sqrt();
        double worst = ((approx - exact) / torch.outer(norms, norms)).abs().max().item<double>();
        Assert.True(worst < 4 * Math.Sqrt(2.0 / k), $"seed {seed}: worst relative inner-product error {worst} at k = {k}");
        // Deterministic: the same seed and stream give bit-identical features; another seed or stream differs.
        using var again = Srht(layers, k, seed);
        Assert.Equal(0.0, (again.ProjectFlat(x) - phi).abs().max().item<double>());
        using var other = Srht(layers, k, seed + 1);
        Assert.False(other.ProjectFlat(x).allclose(phi));
        using var stream1 = Srht(layers, k, seed, stream: 1);
        Assert.False(stream1.ProjectFlat(x).allclose(phi));
    }

    [Fact]
    public void ProjectingLayerBatchesIsTheTransformOfTheFlatPerExampleGradients()
    {
        int seed = TestSeed.For();
        var (capture, layers, lbs, flat) = Oracles.ConvLayerBatches(seed);
        using var _ = capture;
        using var proj = Srht(layers, 16, seed);
        Assert.True(proj.Project(lbs).allclose(proj.ProjectFlat(flat), rtol: 1e-12, atol: 1e-14));
        Assert.Equal(16, proj.OutputDim);
    }
}
