using InfluenceSharp.Scores;
using TorchSharp;

namespace InfluenceSharp.Tests.Cli;

/// <summary>--methods unrolled from the command line: pairwise scores, self-influence, and LDS with
/// same-order retraining next to the seeded protocol.</summary>
[Collection("cli")]
public class UnrolledCliTests
{
    [Fact]
    public void UnrolledScoresAndSameOrderLdsFromTheCommandLine()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", "embedded", "--model", "mlp", "--widths", "8", "--epochs", "1", "--batch-size", "50",
            "--momentum", "0", "--train-count", "150", "--out", run, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(run, "replay.json")));
        Assert.True(File.Exists(Path.Combine(run, "replay-init.safetensors")));

        r = CliRunner.Run("scores", "self", "--run", run, "--methods", "unrolled", "--out", dir.File("self"), "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        using var self = Npy.Read(Path.Combine(dir.File("self"), "self_influence.npy"));
        Assert.Equal(150, self.shape[0]);
        Assert.True(self.mean().item<double>() > 0, "up-weighting an example lowers its own loss on average");

        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "unrolled", "--subsets", "6", "--alpha", "0.9", "--query-count", "5",
            "--retrain", "same-order", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("same-order retraining", r.Out);
        Assert.True(File.Exists(Path.Combine(run, "lds-same-order", "lds-results.json")));
        Assert.False(Directory.Exists(Path.Combine(run, "lds")));

        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "unrolled", "--retrain", "same-order", "--seeds-per-subset", "2",
            "--subsets", "4", "--query-count", "2", "--quiet");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("--seeds-per-subset", r.Err);
    }
}
