using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>TRAK with λ = 0 and fewer training examples than projected dimensions inverts the kernel
/// through the n × n Gram matrix: the scores must equal the k × k pseudo-inverse's.</summary>
public class TrakGramTests
{
    const int D = 6, K = 4;           // logistic regression 6 → 4: k = 4·7 = 28 projected dims

    static TensorPairDataset Data(int n) =>
        new(torch.randn(n, D, dtype: ScalarType.Float64), torch.randint(0, K, new long[] { n }));

    static TrakOptions Options(KernelSolver solver) => new()
    {
        TrainBatchSize = 5, BlockSize = 7, Solver = solver,
        Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Identity },
    };

    [Theory]
    [InlineData(12)]   // n < k: the Gram path
    [InlineData(3)]    // n much smaller than k
    public void GramPathEqualsTheKernelPseudoInverse(int n)
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var model = new LogisticRegression(D, K).to(ScalarType.Float64);
        var train = Data(n); var queries = Data(5);
        using var gram = new Trak(new[] { model }, Options(KernelSolver.Auto));
        using var eigh = new Trak(new[] { model }, Options(KernelSolver.Eigh));
        Assert.Equal(28, gram.ProjectedDim);
        var sg = gram.PairwiseMatrix(queries, train);
        var se = eigh.PairwiseMatrix(queries, train);
        // the oracle: torch's pseudo-inverse of Φᵀ Φ from the features themselves
        var f = eigh.TrainFeatures(train);
        var phi = f["features"]; var q = f["q"].squeeze(1);
        var phiQ = eigh.TrainFeatures(queries)["features"];
        var expected = phiQ.matmul(torch.linalg.pinv(phi.mT.matmul(phi), hermitian: true)).matmul(phi.mT) * q.unsqueeze(0);
        double errGram = ((sg - expected).norm() / expected.norm()).item<double>();
        double errEigh = ((se - expected).norm() / expected.norm()).item<double>();
        Assert.True(errGram < 1e-6, $"seed {seed}: Gram path relative error {errGram}");
        Assert.True(errEigh < 1e-6, $"seed {seed}: Eigh path relative error {errEigh}");
        // same rank: n minus the margin gradient's sum-to-zero directions it spans, at most n
        Assert.Equal(eigh.Diagnostics.Single().Rank, gram.Diagnostics.Single().Rank);
        Assert.True(gram.Diagnostics.Single().Rank <= n);
        Assert.Equal(eigh.SelfInfluence(train), gram.SelfInfluence(train), new ToleranceComparer(1e-7));
    }
}
