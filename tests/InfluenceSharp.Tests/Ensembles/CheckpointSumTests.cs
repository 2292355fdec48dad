using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Scores;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Tests.Methods;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Ensembles;

/// <summary>Influence functions summed over checkpoints (--if-epochs): Σ_c η_c ∇f_c(q)ᵀ(H_c + λI)⁻¹∇L_c(z),
/// each checkpoint with its own curvature.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class CheckpointSumTests
{
    /// <summary>Float64 oracle: per-example gradients by an autograd loop at each "checkpoint" (two
    /// different random models), the diagonal empirical Fisher formed explicitly, the weighted sum taken
    /// by hand. Blocks of one column force the streamed sum over several training blocks.</summary>
    [Fact]
    public void SumOfDiagonalInfluenceOverCheckpointsMatchesTheExplicitOracle()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var train = new TensorPairDataset(torch.randn(23, 5, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 23 }));
        var queries = new TensorPairDataset(torch.randn(4, 5, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 4 }));
        var task = new ClassificationTask(QueryMeasurement.Margin);
        double lam = 0.03;
        double[] eta = { 0.7, 0.2 };
        var members = new List<(IAttributionMethod, double)>();
        Tensor pairOracle = torch.zeros(4, 23, dtype: ScalarType.Float64), selfOracle = torch.zeros(23, dtype: ScalarType.Float64);
        for (int c = 0; c < 2; c++)
        {
            var model = nn.Sequential(("fc1", nn.Linear(5, 6)), ("act", nn.Tanh()), ("fc2", nn.Linear(6, 3))).to(ScalarType.Float64);
            var layers = TrackedLayer.Find(model);
            var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
            var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
            var d = gz.square().mean(new long[] { 0 }) + lam;
            pairOracle += eta[c] * (gq / d).matmul(gz.mT);
            selfOracle += eta[c] * (gz.square() / d).sum(1);
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Diagonal, Fisher = FisherType.Empirical, TrainBatchSize = 7 }).Fit(train)!;
            members.Add((new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = lam, TrainBatchSize = 5 }), eta[c]));
        }
        using var sum = new CheckpointSum("diagonal-sum", members) { BlockBytes = 4 * 4 * 6 };   // 6 columns per block: 4 blocks
        var blocks = new List<int>();
        var got = torch.zeros(4, 23, dtype: ScalarType.Float64);
        sum.Pairwise(queries, train, (off, b) => { blocks.Add(off); got.narrow(1, off, b.shape[1]).copy_(b); });
        Assert.Equal(new[] { 0, 6, 12, 18 }, blocks);
        double err = ((got - pairOracle).norm() / pairOracle.norm()).item<double>();
        Assert.True(err < 1e-5, $"seed {seed}: pairwise relative error {err}");
        Assert.Equal(Oracles.Flat(selfOracle), sum.SelfInfluence(train), new ToleranceComparer(1e-8));
        // Not one member alone: the second checkpoint's term matters.
        var first = members[0].Item1.PairwiseMatrix(queries, train).to(ScalarType.Float64) * eta[0];
        Assert.True(((got - first).norm() / got.norm()).item<double>() > 1e-2, $"seed {seed}: the sum equals the first term");
    }

    [Fact]
    public void RefusesNoMembersAndNonFiniteWeights()
    {
        Assert.Throws<InfluenceSharpException>(() => new CheckpointSum("x", Array.Empty<(IAttributionMethod, double)>()));
        var model = nn.Sequential(("fc", nn.Linear(2, 2))).to(ScalarType.Float64);
        var data = new TensorPairDataset(torch.randn(4, 2, dtype: ScalarType.Float64), torch.randint(0, 2, new long[] { 4 }));
        var task = new ClassificationTask();
        var f = new InfluenceFunction(model, task, new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Identity }).Fit(data)!);
        var e = Assert.Throws<InfluenceSharpException>(() => new CheckpointSum("x", new[] { ((IAttributionMethod)f, double.NaN) }));
        Assert.Contains("not a finite number", e.Message);
    }

    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>The CLI's --if-epochs all --fisher empirical: each checkpoint's own factors, weighted by
    /// the learning rate its sidecar records (one-cycle: different per epoch).</summary>
    [Fact]
    public void CliSumsEveryCheckpointWeightedByItsStepSize()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = Run("train", "--data", "embedded", "--model", "logreg", "--epochs", "3", "--train-count", "200", "--schedule", "onecycle",
            "--lr", "0.1", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = Run("scores", "self", "--run", run, "--methods", "diagonal", "--fisher", "empirical", "--if-epochs", "all", "--damping", "0.01",
            "--out", dir.File("s"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("summed over 3 checkpoint(s)", r.Err);
        using var got = Npy.Read(Path.Combine(dir.File("s"), "self_influence.npy"));

        var ckpts = Checkpoint.List(run);
        Assert.Equal(3, ckpts.Select(c => c.Info.LearningRate).Distinct().Count());
        var data = RunData.For(ckpts[0], null);
        var task = new ClassificationTask();
        var expected = new double[data.Train.Count];
        foreach (var c in ckpts)
        {
            var model = c.LoadModel();
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Diagonal, Fisher = FisherType.Empirical }).Fit(data.Train)!;
            var s = new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = 0.01 }).SelfInfluence(data.Train);
            for (int i = 0; i < s.Length; i++) expected[i] += c.Info.LearningRate * s[i];
        }
        var g = Oracles.Flat(got);
        for (int i = 0; i < g.Length; i++) Assert.True(Math.Abs(g[i] - expected[i]) <= 1e-4 * Math.Abs(expected[i]) + 1e-9, $"example {i}: {g[i]} vs {expected[i]}");

        // The true Fisher (the default) and the last checkpoint alone give other scores.
        r = Run("scores", "self", "--run", run, "--methods", "diagonal", "--if-epochs", "all", "--damping", "0.01", "--out", dir.File("t"));
        Assert.True(r.Code == 0, r.Err);
        using var trueFisher = Npy.Read(Path.Combine(dir.File("t"), "self_influence.npy"));
        Assert.False(trueFisher.allclose(got, rtol: 1e-3));
        r = Run("scores", "self", "--run", run, "--methods", "diagonal", "--if-epochs", "2,3", "--fisher", "empirical", "--damping", "0.01", "--out", dir.File("u"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("epochs 2,3", r.Err);

        // Errors: a missing epoch names it (exit 1); usage errors exit 2 before any work.
        r = Run("scores", "self", "--run", run, "--methods", "ekfac", "--if-epochs", "9", "--out", dir.File("v"));
        Assert.Equal(1, r.Code); Assert.Contains("epoch 9", r.Err); Assert.DoesNotContain(" at ", r.Err);
        r = Run("scores", "self", "--run", run, "--methods", "tracin-last", "--if-epochs", "all", "--out", dir.File("v"));
        Assert.Equal(2, r.Code); Assert.Contains("--if-epochs", r.Err);
        r = Run("scores", "self", "--run", run, "--methods", "identity", "--fisher", "empirical", "--out", dir.File("v"));
        Assert.Equal(2, r.Code); Assert.Contains("--fisher", r.Err);
        r = Run("detect-mislabeled", "--run", run, "--methods", "ekfac", "--if-epochs", "0");
        Assert.Equal(2, r.Code); Assert.Contains("--if-epochs", r.Err);
        Assert.False(Directory.Exists(dir.File("v")));
    }
}
