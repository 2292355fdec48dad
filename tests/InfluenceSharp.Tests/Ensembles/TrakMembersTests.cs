using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Ensembles;

/// <summary>TRAK's ensemble from models the user has: the mean-over-members combination of TRAK's ensemble, computed
/// from single-member results, and the CLI's --members / --member-epochs.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class TrakMembersTests
{
    const int D = 4, K = 3;

    /// <summary>score(q, z) = mean_m[φ_m(q)ᵀ(Φ_mᵀΦ_m + λI)⁻¹φ_m(z)] · mean_m Q_m(z). A single-member
    /// TRAK gives S_m = φ_m(q)ᵀ(…)⁻¹φ_m(z) · Q_m(z), so the ensemble is mean_m(S_m / Q_m) · mean_m Q_m.
    /// With the identity projection each member's features do not depend on its projection stream,
    /// so the single-member runs see exactly the features the ensemble sees.</summary>
    [Fact]
    public void EnsembleIsTheMeanOfSingleMemberKernelsTimesTheMeanQ()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var models = Enumerable.Range(0, 3).Select(_ => (nn.Module<Tensor, Tensor>)new LogisticRegression(D, K).to(ScalarType.Float64)).ToList();
        var train = new TensorPairDataset(torch.randn(30, D, dtype: ScalarType.Float64), torch.randint(0, K, new long[] { 30 }));
        var queries = new TensorPairDataset(torch.randn(5, D, dtype: ScalarType.Float64), torch.randint(0, K, new long[] { 5 }));
        var o = new TrakOptions
        {
            TrainBatchSize = 7, BlockSize = 16, Damping = 0.05,
            Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Identity },
        };
        Tensor Q(nn.Module<Tensor, Tensor> m)
        {
            using var _ = no_grad();
            return 1 - nn.functional.softmax(m.forward(train.X), 1).gather(1, train.Y.unsqueeze(1)).squeeze(1);
        }
        var kernels = new List<Tensor>(); var qs = new List<Tensor>();
        foreach (var m in models)
        {
            using var single = new Trak(new[] { m }, o);
            var q = Q(m);
            kernels.Add(single.PairwiseMatrix(queries, train).to(ScalarType.Float64) / q.unsqueeze(0));
            qs.Add(q);
        }
        var expected = torch.stack(kernels).mean(new long[] { 0 }) * torch.stack(qs).mean(new long[] { 0 }).unsqueeze(0);
        using var ens = new Trak(models, o);
        var got = ens.PairwiseMatrix(queries, train).to(ScalarType.Float64);
        double err = ((got - expected).norm() / expected.norm()).item<double>();
        Assert.True(err < 1e-6, $"seed {seed}: relative error {err}");
        // Not trivially one member's scores: the ensemble differs from member 0 alone.
        var first = kernels[0] * qs[0].unsqueeze(0);
        Assert.True(((got - first).norm() / first.norm()).item<double>() > 1e-3, $"seed {seed}: ensemble equals member 0");
    }

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    // --seed also chooses train's --train-count subset, so members on the same data differ here by
    // learning rate (lr 0.05 / 0.1).
    static void Train(string dir, int member, string model = "logreg", int count = 300)
    {
        var r = Run("train", "--data", "embedded", "--model", model, "--epochs", "2", "--train-count", count.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--lr", member == 0 ? "0.05" : "0.1", "--out", dir, "--quiet");
        Assert.True(r.Code == 0, r.Err);
    }

    /// <summary>scores --methods trak --members/--member-epochs uses exactly the chosen checkpoints, in
    /// order (--run's, then each member run's), with the CLI's TRAK settings.</summary>
    [Fact]
    public void CliMembersAndEpochsScoreWithTheChosenCheckpoints()
    {
        using var dir = new TempDir();
        string a = dir.File("a"), b = dir.File("b");
        Train(a, 0); Train(b, 1);
        var r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", b, "--member-epochs", "all",
            "--query-count", "6", "--out", dir.File("s"), "--damping", "0.01");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("4 ensemble member(s)", r.Err);
        using var got = Npy.Read(Path.Combine(dir.File("s"), "scores.npy"));

        var ckpts = Checkpoint.List(a).Concat(Checkpoint.List(b)).ToList();
        Assert.Equal(4, ckpts.Count);
        var data = RunData.For(ckpts[0], null);
        var queries = data.Test.Subset(Enumerable.Range(0, 6).ToArray(), "q");
        using var trak = new Trak(ckpts.Select(c => c.LoadModel()).ToList(), new TrakOptions
        {
            Damping = 0.01, Projection = new ProjectionOptions { Layout = ProjectionLayout.Kronecker, Dim = 2048, Seed = 0 },
        });
        var expected = trak.PairwiseMatrix(queries, data.Train).to(ScalarType.Float64);
        double err = ((got.to(ScalarType.Float64) - expected).norm() / expected.norm()).item<double>();
        Assert.True(err < 1e-4, $"relative error {err}");

        // Last checkpoints only (the default --member-epochs): 2 members, other scores.
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", b, "--query-count", "6", "--out", dir.File("s2"), "--damping", "0.01");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("2 ensemble member(s)", r.Err);
        // One epoch of --run alone.
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--member-epochs", "1", "--query-count", "6", "--out", dir.File("s3"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("1 ensemble member(s)", r.Err);
        Assert.Contains("epoch-0001", r.Err);
    }

    [Fact]
    public void CliRefusesMembersTrainedOnOtherDataOrAnotherArchitecture()
    {
        using var dir = new TempDir();
        string a = dir.File("a"), other = dir.File("other-data"), mlp = dir.File("mlp");
        Train(a, 0); Train(other, 0, count: 200); Train(mlp, 0, model: "mlp");
        var r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", other, "--query-count", "3", "--out", dir.File("s"));
        Assert.Equal(1, r.Code);
        Assert.Contains("other-data", r.Err);
        Assert.Contains("trained on other data", r.Err);
        Assert.DoesNotContain(" at ", r.Err);
        Assert.False(File.Exists(Path.Combine(dir.File("s"), "scores.npy")));

        r = Run("detect-mislabeled", "--run", a, "--methods", "trak", "--members", mlp);
        Assert.Equal(1, r.Code);
        Assert.Contains("architecture", r.Err);

        // A checkpoint file as a member is checked the same way.
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", Checkpoint.List(other)[^1].WeightsPath, "--query-count", "3", "--out", dir.File("s"));
        Assert.Equal(1, r.Code);
        Assert.Contains("trained on other data", r.Err);

        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--member-epochs", "7", "--query-count", "3", "--out", dir.File("s"));
        Assert.Equal(1, r.Code);
        Assert.Contains("epoch 7", r.Err);
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", dir.File("nowhere"), "--query-count", "3", "--out", dir.File("s"));
        Assert.Equal(1, r.Code);
        Assert.Contains("nowhere", r.Err);

        // Usage errors (exit 2, before any work).
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--members", other, "--ensemble", "3", "--out", dir.File("s"));
        Assert.Equal(2, r.Code); Assert.Contains("--ensemble", r.Err);
        r = Run("scores", "pairwise", "--run", a, "--methods", "tracin-last", "--members", other, "--out", dir.File("s"));
        Assert.Equal(2, r.Code); Assert.Contains("--members", r.Err);
        r = Run("scores", "pairwise", "--run", a, "--methods", "trak", "--member-epochs", "two", "--out", dir.File("s"));
        Assert.Equal(2, r.Code); Assert.Contains("--member-epochs", r.Err);
    }
}
