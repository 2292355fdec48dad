using System.Globalization;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Runs;
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

    [Fact]
    public void CurateWithUnrolledRanksByTheWeightedPerQueryDerivatives()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", "tinted", "--model", "logreg", "--epochs", "1", "--batch-size", "25", "--momentum", "0",
            "--lr", "0.01", "--train-count", "100", "--seed", "0", "--out", run, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        string outDir = dir.File("curate");
        r = CliRunner.Run("curate", "--run", run, "--methods", "unrolled", "--objective", "mean", "--validation", "test:40",
            "--remove", "5", "--seeds", "0", "--epochs", "1", "--out", outDir, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        var rows = File.ReadAllLines(Path.Combine(outDir, "ranking-unrolled.csv")).Skip(1).Select(l => l.Split(',')).ToArray();
        Assert.Equal(100, rows.Length);
        var order = rows.Select(c => int.Parse(c[1], CultureInfo.InvariantCulture)).ToArray();
        var written = rows.Select(c => double.Parse(c[2], CultureInfo.InvariantCulture)).ToArray();

        // The same objective as the weighted sum of every validation query's own derivatives.
        var rc = Run.Open(run);
        var val = rc.Data.Test.Subset(Enumerable.Range(0, 40).ToArray(), "validation");
        var weights = ValidationAttribution.Weights(CurationObjective.Mean, 40);
        using var method = UnrolledAttribution.FromRun(run, rc.Data.Train);
        using var d = method.Derivatives(val);
        var expected = new double[100];
        for (int q = 0; q < 40; q++)
        {
            var row = d[q].data<double>().ToArray();
            for (int i = 0; i < 100; i++) expected[i] -= weights[q] * row[i];
        }
        double scale = expected.Max(Math.Abs);
        Assert.True(scale > 1e-6, $"scores too small to compare ({scale})");
        // float32 runs: the two sums round differently, so only near-ties may swap.
        for (int k = 0; k < 100; k++)
            Assert.True(Math.Abs(written[k] - expected[order[k]]) <= 1e-4 * scale, $"rank {k + 1}: written {written[k]:G9}, per-query sum {expected[order[k]]:G9}");
        for (int k = 0; k + 1 < 100; k++)
            Assert.True(expected[order[k]] <= expected[order[k + 1]] + 1e-5 * scale, $"ranks {k + 1} and {k + 2} out of order");
        Assert.Equal(ValidationAttribution.MostDetrimental(expected).Take(10), order.Take(10));
    }
}
