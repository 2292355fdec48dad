using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Scores;
using InfluenceSharp.Tests.Cli;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Audit;

/// <summary>CLI paths that had no test: --per-layer, --query-rank, shard merges of `scores`,
/// TRAK with --ensemble, and CIFAR-10 from the binary reader to mislabel detection.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class CliPathTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static void Ok((int Code, string Out, string Err) r) => Assert.True(r.Code == 0, r.Err + r.Out);

    static Tensor Read(string dir, string file = "scores.npy") => Npy.Read(Path.Combine(dir, file));

    /// <summary>A tiny MLP run (two Linear layers, so per-layer scores have two parts).</summary>
    static string TrainMlp(TempDir dir, int count = 120)
    {
        string run = dir.File("run");
        Ok(Run("train", "--data", "embedded", "--model", "mlp", "--widths", "12", "--epochs", "1", "--train-count", count.ToString(),
            "--batch-size", "30", "--out", run, "--quiet"));
        return run;
    }

    [Fact]
    public void PerLayerScoresSumToTheTotalAndQueryRankReachesTheScorer()
    {
        using var dir = new TempDir();
        string run = TrainMlp(dir);
        string ek = dir.File("ek"), id = dir.File("id");
        Ok(Run("fit-factors", "--run", run, "--strategy", "ekfac", "--out", ek, "--quiet"));
        Ok(Run("fit-factors", "--run", run, "--strategy", "identity", "--out", id, "--quiet"));
        string Scores(string factors, string name, params string[] extra)
        {
            string o = dir.File(name);
            Ok(Run(new[] { "scores", "pairwise", "--run", run, "--factors", factors, "--out", o, "--query-count", "6", "--quiet" }.Concat(extra).ToArray()));
            return o;
        }

        // --per-layer: one matrix per tracked layer, and they sum to the total, which equals a plain run.
        string plain = Scores(ek, "plain"), perLayer = Scores(ek, "per-layer", "--per-layer");
        using var total = Read(plain);
        using var totalPl = Read(perLayer);
        Assert.True(TensorAssert.BitEqual(total, totalPl), "--per-layer changed the total scores");
        var layerFiles = new[] { "scores-fc1.npy", "scores-fc2.npy" };
        Assert.Equal(layerFiles, Directory.GetFiles(perLayer, "scores-*.npy").Select(Path.GetFileName).Order());
        var sum = layerFiles.Select(f => Read(perLayer, f)).Aggregate((a, b) => a + b);
        Assert.Equal(total.shape, sum.shape);
        Assert.True(sum.allclose(total, rtol: 1e-5, atol: 1e-6 * total.abs().max().item<float>()), "per-layer scores do not sum to the total");
        Assert.True(Read(perLayer, layerFiles[0]).abs().max().item<float>() > 0 && Read(perLayer, layerFiles[1]).abs().max().item<float>() > 0);

        // --query-rank: identity preconditioning keeps each query gradient g aᵀ of rank one, so rank 1
        // (through the SVD path) is exact; with EK-FAC a full rank (16 ≥ min(out, in) of every layer) is
        // exact and rank 1 is not.
        using var idExact = Read(Scores(id, "id-exact"));
        using var idRank1 = Read(Scores(id, "id-r1", "--query-rank", "1"));
        double rel = ((idRank1 - idExact).norm() / idExact.norm()).item<float>();
        Assert.True(rel < 1e-4, $"identity, rank 1: relative error {rel}");
        using var ekFull = Read(Scores(ek, "ek-r16", "--query-rank", "16"));
        Assert.True(ekFull.allclose(total, rtol: 1e-5, atol: 1e-6 * total.abs().max().item<float>()));
        using var ekRank1 = Read(Scores(ek, "ek-r1", "--query-rank", "1"));
        double rel1 = ((ekRank1 - total).norm() / total.norm()).item<float>();
        Assert.True(rel1 > 1e-3, $"EK-FAC rank 1 equals the exact scores (relative difference {rel1}): --query-rank did not reach the scorer");
    }

    [Fact]
    public void ShardedScoresMergeToTheSingleRunByteForByte()
    {
        using var dir = new TempDir();
        string run = TrainMlp(dir, 150);
        string factors = dir.File("f");
        Ok(Run("fit-factors", "--run", run, "--strategy", "kfac", "--out", factors, "--quiet"));
        foreach (var kind in new[] { "pairwise", "self" })
        {
            string file = kind == "pairwise" ? PartitionedScoring.PairwiseFile : PartitionedScoring.SelfFile;
            string single = dir.File($"{kind}-single"), sharded = dir.File($"{kind}-sharded");
            string[] Args(string o) => new[] { "scores", kind, "--run", run, "--factors", factors, "--out", o, "--partition-size", "40", "--quiet" }
                .Concat(kind == "pairwise" ? new[] { "--query-count", "5" } : Array.Empty<string>()).ToArray();
            Ok(Run(Args(single)));
            var r = Run(Args(sharded).Concat(new[] { "--shard", "0/2" }).ToArray());
            Ok(r);
            Assert.False(File.Exists(Path.Combine(sharded, file)), $"{kind}: the final file exists after one of two shards");
            Ok(Run(Args(sharded).Concat(new[] { "--shard", "1/2" }).ToArray()));
            Ok(Run(Args(sharded)));                                              // merge
            Assert.Equal(File.ReadAllBytes(Path.Combine(single, file)), File.ReadAllBytes(Path.Combine(sharded, file)));
        }
    }

    [Fact]
    public void TrakThroughTheCliWithAnEnsembleOfTwo()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Ok(Run("train", "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100", "--batch-size", "25", "--out", run, "--quiet"));
        string one = dir.File("trak1"), two = dir.File("trak2");
        Ok(Run("scores", "pairwise", "--run", run, "--methods", "trak", "--proj-layout", "dense", "--proj-dim", "64", "--out", one, "--query-count", "4", "--quiet"));
        Assert.False(Directory.Exists(Path.Combine(run, "ensemble")));
        Ok(Run("scores", "pairwise", "--run", run, "--methods", "trak", "--proj-layout", "dense", "--proj-dim", "64", "--ensemble", "2", "--out", two, "--query-count", "4", "--quiet"));
        Assert.True(File.Exists(Path.Combine(run, "ensemble", "seed-1", "epoch-0001.safetensors")), "the second ensemble model is not under RUN_DIR/ensemble");
        using var s1 = Read(one);
        using var s2 = Read(two);
        Assert.Equal(new long[] { 4, 100 }, s1.shape);
        Assert.Equal(s1.shape, s2.shape);
        Assert.True(s1.isfinite().all().item<bool>() && s2.isfinite().all().item<bool>());
        Assert.True(s1.abs().max().item<float>() > 0);
        Assert.False(s1.allclose(s2, rtol: 1e-3, atol: 1e-6), "an ensemble of 2 gives the scores of 1");
    }

    /// <summary>CIFAR-10 binary batches written here (3×32×32, one label byte per record), read through
    /// `--data cifar10:DIR`, trained for one epoch with 15% corrupted labels, then mislabel detection.
    /// Each class has its own colour, so one epoch learns it and corrupted labels stand out.</summary>
    [Fact]
    public void Cifar10FromBinaryBatchesToMislabelDetection()
    {
        using var dir = new TempDir();
        string data = dir.File("cifar");
        Directory.CreateDirectory(data);
        var rng = new Random(TestSeed.For());
        ImageDataset Make(int n, string name)
        {
            var px = new byte[n * 3072];
            var labels = new int[n];
            for (int i = 0; i < n; i++)
            {
                int c = labels[i] = i % 10;
                for (int ch = 0; ch < 3; ch++)
                {
                    int level = ((c >> ch) & 1) * 150 + (c >= 8 ? 60 : 0) + (ch == 0 && c % 4 == 3 ? 40 : 0);
                    for (int p = 0; p < 1024; p++) px[i * 3072 + ch * 1024 + p] = (byte)Math.Clamp(level + rng.Next(-30, 31), 0, 255);
                }
            }
            return new ImageDataset(name, px, labels, 3, 32, 32, 10);
        }
        for (int b = 1; b <= 5; b++) Cifar10Reader.WriteBatch(Path.Combine(data, $"data_batch_{b}.bin"), Make(60, $"b{b}"));
        Cifar10Reader.WriteBatch(Path.Combine(data, "test_batch.bin"), Make(50, "test"));

        string run = dir.File("run");
        var r = Run("train", "--data", $"cifar10:{data}", "--model", "logreg", "--epochs", "1", "--batch-size", "20", "--lr", "0.001",
            "--corrupt", "0.15", "--out", run, "--quiet");
        Ok(r);
        var sidecar = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "epoch-0001.json"))).RootElement;
        Assert.Equal(300, sidecar.GetProperty("train_count").GetInt32());
        // One epoch learns the colour classes (chance: 0.1); how far it gets depends on the data order's draw.
        Assert.True(sidecar.GetProperty("metrics").GetProperty("test_accuracy").GetDouble() > 0.6, sidecar.GetProperty("metrics").ToString());
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity", "--quiet");
        Ok(r);
        using var det = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")));
        double auc = det.RootElement[0].GetProperty("roc_auc").GetDouble();
        Assert.True(auc > 0.85, $"ROC AUC {auc}\n{r.Out}");
    }
}
