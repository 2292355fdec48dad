using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using TorchSharp;

namespace InfluenceSharp.Tests.Scores;

/// <summary>Merges check every partial before using it, and leftovers of killed writers are cleaned.</summary>
public class MergeValidationTests
{
    static LabeledDataset Train(int n) => Embedded.Split.Train.Subset(Enumerable.Range(0, n).ToArray());

    static ScoresManifest Manifest(string kind, int n, int part, int queries = 0) => new()
    {
        Kind = kind, Method = "x", Settings = new(), ModelFingerprint = "m", TrainFingerprint = "t", TrainCount = n, PartitionSize = part, QueryCount = queries,
    };

    static double[] Random(int n, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray();
    }

    /// <summary>A PID no running process has: a child that has exited.</summary>
    static int DeadPid()
    {
        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }

    [Fact]
    public void SelfInfluenceMergeRefusesAPartialOfTheWrongLengthNamingIt()
    {
        const int seed = 11; Console.WriteLine($"seed {seed}");
        using var dir = new TempDir();
        var train = Train(750);
        string partials = Path.Combine(dir.Path, "partials");
        Directory.CreateDirectory(partials);
        // Partition 1 (250 examples) was overwritten by a 500-element partial from another job.
        Npy.Write(Path.Combine(partials, "self-00000.npy"), Random(250, seed), 250);
        Npy.Write(Path.Combine(partials, "self-00001.npy"), Random(500, seed + 1), 500);
        Npy.Write(Path.Combine(partials, "self-00002.npy"), Random(250, seed + 2), 250);
        // Every partition is present, so nothing is computed (no method needed).
        var e = Assert.Throws<InfluenceSharpException>(() => PartitionedScoring.Self(null!, train, dir.Path, Manifest("self", 750, 250), Shard.All, new Profiler()));
        Assert.Contains("self-00001.npy", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, PartitionedScoring.SelfFile)));
    }

    [Fact]
    public void PairwiseMergeRefusesAPartialOfTheWrongShapeNamingIt()
    {
        const int seed = 12; Console.WriteLine($"seed {seed}");
        using var dir = new TempDir();
        var train = Train(750);
        string partials = Path.Combine(dir.Path, "partials");
        Directory.CreateDirectory(partials);
        Npy.Write(Path.Combine(partials, "scores-00000.npy"), Random(3 * 250, seed), 3, 250);
        Npy.Write(Path.Combine(partials, "scores-00001.npy"), Random(3 * 500, seed + 1), 3, 500);
        Npy.Write(Path.Combine(partials, "scores-00002.npy"), Random(3 * 250, seed + 2), 3, 250);
        var e = Assert.Throws<InfluenceSharpException>(() => PartitionedScoring.Pairwise((_, _, _) => throw new InvalidOperationException("nothing to compute"),
            new[] { "scores" }, Train(3), train, dir.Path, Manifest("pairwise", 750, 250, 3), Shard.All, new Profiler()));
        Assert.Contains("scores-00001.npy", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, PartitionedScoring.PairwiseFile)));
    }

    [Fact]
    public void FactorMergeRefusesAPartialCopiedFromAnotherPartition()
    {
        using var dir = new TempDir();
        var train = Train(50);       // partitions of 20, 20, 10
        torch.manual_seed(5);
        var model = ModelSpec.For("logreg", 1, 28, 28, 10).Create();
        var fitter = new FactorFitter(model, new ClassificationTask(), new FactorOptions { Strategy = FactorStrategy.Diagonal, PartitionSize = 20, TrainBatchSize = 10 });
        Assert.Null(fitter.Fit(train, dir.Path, new Shard(0, 3)));
        Assert.Null(fitter.Fit(train, dir.Path, new Shard(1, 3)));
        string P(int p) => Path.Combine(dir.Path, "partials", $"diagonal-{p:D5}.safetensors");
        File.Copy(P(0), P(2));       // "shard 2" produced partition 0's sums
        var e = Assert.Throws<InfluenceSharpException>(() => fitter.Fit(train, dir.Path, new Shard(2, 3)));
        Assert.Contains("diagonal-00002.safetensors", e.Message);
        Assert.False(File.Exists(Path.Combine(dir.Path, Factors.FactorsFile)));
    }

    [Fact]
    public void FeatureStoreRefusesABlockCopiedFromAnotherBlock()
    {
        using var dir = new TempDir();
        var train = Train(30);       // blocks of 10
        torch.manual_seed(6);
        var cps = new List<TracInCheckpoint> { new(ModelSpec.For("logreg", 1, 28, 28, 10).Create(), 0.1) };
        var options = new TracInFastOptions { StoreDirectory = dir.Path, BlockSize = 10, TrainBatchSize = 10 };
        using (var m = new TracInCPFast(cps, null, options)) Assert.Equal(3, m.BuildStore(train));
        string B(int b) => Path.Combine(dir.Path, "blocks", $"{b:D5}.safetensors");
        File.Copy(B(0), B(1), overwrite: true);
        using (var m = new TracInCPFast(cps, null, options))
        {
            var e = Assert.Throws<InfluenceSharpException>(() => m.SelfInfluence(train));
            Assert.Contains("00001.safetensors", e.Message);
        }
    }

    [Fact]
    public void LeftoverTempFilesOfAKilledWriterAreCleanedAndPartialsRemovedWhenTheStageCompletes()
    {
        const int seed = 13; Console.WriteLine($"seed {seed}");
        using var dir = new TempDir();
        var train = Train(500);
        int dead = DeadPid();
        string partials = Path.Combine(dir.Path, "partials");
        Directory.CreateDirectory(partials);
        // Partials as a writer leaves them: each recorded in the manifest (checksum).
        string mpath = Path.Combine(dir.Path, "manifest.json");
        InfluenceSharp.Formats.Json.WriteFile(mpath, Manifest("self", 500, 250) with { Checksums = new() });
        Npy.Write(Path.Combine(partials, "self-00000.npy"), Random(250, seed), new long[] { 250 }, sum => InfluenceSharp.Storage.ManifestChecksums.Record(mpath, "partials/self-00000.npy", sum));
        Npy.Write(Path.Combine(partials, "self-00001.npy"), Random(250, seed + 1), new long[] { 250 }, sum => InfluenceSharp.Storage.ManifestChecksums.Record(mpath, "partials/self-00001.npy", sum));
        string leftPartial = Path.Combine(partials, $".self-00001.npy.tmp-{dead}-{Guid.NewGuid():N}");
        string leftFinal = Path.Combine(dir.Path, $".self_influence.npy.partial-{dead}-{Guid.NewGuid():N}");
        File.WriteAllBytes(leftPartial, new byte[100]);
        File.WriteAllBytes(leftFinal, new byte[100]);
        var s = PartitionedScoring.Self(null!, train, dir.Path, Manifest("self", 500, 250), Shard.All, new Profiler());
        Assert.Equal(500, s!.Length);
        Assert.False(File.Exists(leftFinal), "stale temp file of the final merge left behind");
        Assert.False(Directory.Exists(partials), "partials/ should be removed once the scores are complete");

        // A feature store's stale block temp file.
        string store = dir.File("store");
        Directory.CreateDirectory(Path.Combine(store, "blocks"));
        string leftBlock = Path.Combine(store, "blocks", $".00000.safetensors.tmp-{dead}-{Guid.NewGuid():N}");
        File.WriteAllBytes(leftBlock, new byte[100]);
        torch.manual_seed(7);
        var cps = new List<TracInCheckpoint> { new(ModelSpec.For("logreg", 1, 28, 28, 10).Create(), 0.1) };
        using (var m = new TracInCPFast(cps, null, new TracInFastOptions { StoreDirectory = store, BlockSize = 10, TrainBatchSize = 10 }))
            m.BuildStore(Train(20));
        Assert.False(File.Exists(leftBlock), "stale block temp file left behind");
    }
}
