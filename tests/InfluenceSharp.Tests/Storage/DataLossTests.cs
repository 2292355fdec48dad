using InfluenceSharp.Scores;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Storage;

/// <summary>No command loses data or returns silently wrong results: --overwrite never deletes what
/// the command reads; readers are protected from writers; merges refuse non-finite or unexpected
/// partials; damaged artifacts are refused by checksum; non-finite weights and duplicate seeds are
/// refused. The CLI runs in process.</summary>
[Collection("cli")]
public class DataLossTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => Cli.CliRunner.Run(args);

    /// <summary>A small logistic-regression run (2 checkpoints, 100 examples).</summary>
    static string TrainRun(TempDir dir, string name = "run")
    {
        string run = dir.File(name);
        var r = Run("train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "2", "--train-count", "100", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        return run;
    }

    /// <summary>Flips 16 bytes in the middle of a file (past any header): bit rot.</summary>
    static void Damage(string path)
    {
        var bytes = File.ReadAllBytes(path);
        int at = bytes.Length / 2;
        for (int i = at; i < at + 16; i++) bytes[i] ^= 0x5A;
        File.WriteAllBytes(path, bytes);
    }

    // ---- --overwrite never deletes an input of the same command ----

    [Fact]
    public void ImportAndTrainWithOverwriteRefuseAnInputThatTheOverwriteWouldDelete()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir, "imp1");
        string w1 = Path.Combine(run, "epoch-0001.safetensors");
        var hashBefore = Checkpoint.HashFile(w1);

        var r = Run("import", "--model", "logreg", "--weights", w1, "--data", "embedded", "--train-count", "100", "--out", run, "--overwrite", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("--weights", r.Err);
        Assert.Contains("epoch-0001.safetensors", r.Err);
        Assert.Contains("--overwrite", r.Err);
        // Nothing was deleted: the run is whole, its checkpoints unchanged.
        Assert.Equal(new[] { 1, 2 }, Checkpoint.List(run).Select(c => c.Info.Epoch));
        Assert.Equal(hashBefore, Checkpoint.HashFile(w1));

        // The same file reached through a link (and another spelling of the directory) is refused too.
        string link = dir.File("w.safetensors");
        File.CreateSymbolicLink(link, Path.Combine(run, "epoch-0002.safetensors"));
        r = Run("import", "--model", "logreg", "--weights", link, "--data", "embedded", "--train-count", "100", "--out", Path.Combine(run, "..", "imp1"), "--overwrite", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("w.safetensors", r.Err);
        Assert.Equal(new[] { 1, 2 }, Checkpoint.List(run).Select(c => c.Info.Epoch));

        // train --init: the init file would be gone for a later --resume of the new run.
        r = Run("train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100",
            "--init", Path.Combine(run, "epoch-0002.safetensors"), "--overwrite", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("--init", r.Err);
        Assert.Equal(new[] { 1, 2 }, Checkpoint.List(run).Select(c => c.Info.Epoch));

        // Inputs outside what --overwrite deletes are fine: into another run, and a file kept in the run directory.
        r = Run("import", "--model", "logreg", "--weights", w1, "--data", "embedded", "--train-count", "100", "--out", dir.File("imp2"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        File.Copy(w1, Path.Combine(run, "kept.safetensors"));
        r = Run("import", "--model", "logreg", "--weights", Path.Combine(run, "kept.safetensors"), "--data", "embedded", "--train-count", "100", "--out", run, "--overwrite", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Single(Checkpoint.List(run));
    }

    // ---- readers hold a shared lock ----

    [Fact]
    public void AWriterIsRefusedWhileAReaderHoldsTheRunAndReadersAreRefusedWhileAWriterHoldsIt()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors");
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--quiet").Code);

        // A reader (as fit-factors, scores, detect... hold it): train --overwrite on the run is refused, naming it.
        using (var reader = DirectoryLock.AcquireShared(run, "reading the run"))
        {
            Assert.NotNull(reader);
            var r = Run("train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100", "--overwrite", "--quiet");
            Assert.Equal(1, r.Code);
            Assert.Contains("being read by", r.Err);
            Assert.Contains($"process {Environment.ProcessId}", r.Err);
            Assert.Contains("reading the run", r.Err);
            Assert.Equal(2, Checkpoint.List(run).Count);   // untouched
            // ... and so is import, and a resume; two readers share the lock.
            File.Copy(Path.Combine(run, "epoch-0001.safetensors"), dir.File("w.safetensors"));
            r = Run("import", "--model", "logreg", "--weights", dir.File("w.safetensors"), "--data", "embedded", "--train-count", "100", "--out", run, "--overwrite", "--quiet");
            Assert.Equal(1, r.Code);
            Assert.Contains("being read by", r.Err);
            Assert.Equal(2, Checkpoint.List(run).Count);
            using var second = DirectoryLock.AcquireShared(run, "reading the run too");
            Assert.NotNull(second);
            r = Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("self"), "--quiet");
            Assert.True(r.Code == 0, r.Err);
        }
        // Released: the writer goes ahead.
        var ok = Run("train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100", "--overwrite", "--quiet");
        Assert.True(ok.Code == 0, ok.Err);

        // The commands that read take the lock: while a writer holds the run (or the factors), they are refused.
        using (DirectoryLock.Acquire(run, "training run"))
        {
            var r = Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", dir.File("f2"), "--quiet");
            Assert.Equal(1, r.Code);
            Assert.Contains("training run", r.Err);
            Assert.False(File.Exists(Path.Combine(dir.File("f2"), "factors.safetensors")));
        }
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", dir.File("f2"), "--quiet").Code);
        using (DirectoryLock.Acquire(dir.File("f2"), "factors"))
        {
            var r = Run("scores", "self", "--run", run, "--factors", dir.File("f2"), "--out", dir.File("self2"), "--quiet");
            Assert.Equal(1, r.Code);
            Assert.Contains("f2", r.Err);
        }
        // A fit of factors that exist only reads them: it runs beside a reader of the same factors.
        using (DirectoryLock.AcquireShared(dir.File("f2"), "reading the factors"))
            Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", dir.File("f2"), "--quiet").Code);
    }

    // ---- merges refuse non-finite and unexpected partials ----

    [Fact]
    public void ANaNInAScorePartialIsRefusedAtTheMergeNamingTheFile()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors"), self = dir.File("self");
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--quiet").Code);
        // Shard 0/2 leaves partitions 0 and 2 of 4 as partials (no merge yet).
        var r = Run("scores", "self", "--run", run, "--factors", factors, "--out", self, "--partition-size", "25", "--shard", "0/2", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        string part = Path.Combine(self, "partials", "self-00002.npy");
        var values = PartitionedScoring.ReadVector(part);
        Assert.All(values, v => Assert.True(double.IsFinite(v) && v != 0));
        values[3] = double.NaN;
        // A NaN with a matching checksum in the manifest (as a diverged computation would record it).
        Npy.Write(part, values, new long[] { values.Length }, sum =>
            ManifestChecksums.Record(Path.Combine(self, "manifest.json"), "partials/self-00002.npy", sum));
        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", self, "--partition-size", "25", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("self-00002.npy", r.Err);
        Assert.Contains("non-finite", r.Err);
        Assert.False(File.Exists(Path.Combine(self, "self_influence.npy")));

        // A partial the manifest does not expect (copied from another job) is refused too.
        File.Copy(Path.Combine(self, "partials", "self-00000.npy"), part, overwrite: true);
        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", self, "--partition-size", "25", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("self-00002.npy", r.Err);
        Assert.Contains("checksum", r.Err);

        // Deleted as the message says: recomputed, merged, finite.
        File.Delete(part);
        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", self, "--partition-size", "25", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.All(PartitionedScoring.ReadVector(Path.Combine(self, "self_influence.npy")), v => Assert.True(double.IsFinite(v)));
    }

    [Fact]
    public void ANaNInAFactorPartialIsRefusedAtTheMerge()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors");
        var r = Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--partition-size", "25", "--shard", "0/2", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        string part = Path.Combine(factors, "partials", "diagonal-00002.safetensors");
        Dictionary<string, Tensor> tensors;
        Dictionary<string, string> meta;
        using (var f = SafeTensors.Load(part))
        {
            tensors = f.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            meta = new Dictionary<string, string>(f.Metadata);
        }
        tensors["sum0"].view(-1)[5] = tensor(double.NaN, ScalarType.Float64);
        SafeTensors.Save(part, tensors, meta, sum => ManifestChecksums.Record(Path.Combine(factors, "manifest.json"), "partials/diagonal-00002.safetensors", sum));
        foreach (var t in tensors.Values) t.Dispose();
        r = Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--partition-size", "25", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("diagonal-00002.safetensors", r.Err);
        Assert.Contains("non-finite", r.Err);
        Assert.False(File.Exists(Path.Combine(factors, "factors.safetensors")));
    }

    // ---- checksums: bit rot is refused, naming the file ----

    [Fact]
    public void DamagedCheckpointFactorsStoreBlockAndPartialsAreRefusedNamingTheFile()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors");
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--quiet").Code);
        var manifest = File.ReadAllText(Path.Combine(factors, "manifest.json"));
        Assert.Contains(Checksum.Prefix, manifest);

        // factors.safetensors
        string ff = Path.Combine(factors, "factors.safetensors");
        byte[] good = File.ReadAllBytes(ff);
        Damage(ff);
        var r = Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("s1"), "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("factors.safetensors", r.Err);
        Assert.Contains("checksum", r.Err);
        File.WriteAllBytes(ff, good);
        Assert.Equal(0, Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("s1"), "--quiet").Code);

        // A store block
        Assert.Equal(0, Run("build-store", "--run", run, "--methods", "tracin-last", "--quiet").Code);
        string block = Directory.GetFiles(Path.Combine(run, "store"), "00000.safetensors", SearchOption.AllDirectories).Single();
        Damage(block);
        r = Run("scores", "self", "--run", run, "--methods", "tracin-last", "--out", dir.File("s2"), "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains(Path.Combine("blocks", "00000.safetensors"), r.Err);
        Assert.Contains("checksum", r.Err);

        // A score partial
        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("s3"), "--partition-size", "25", "--shard", "0/2", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Damage(Path.Combine(dir.File("s3"), "partials", "self-00000.npy"));
        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("s3"), "--partition-size", "25", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("self-00000.npy", r.Err);

        // A checkpoint
        string ck = Path.Combine(run, "epoch-0002.safetensors");
        Damage(ck);
        r = Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", dir.File("f2"), "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("epoch-0002.safetensors", r.Err);
        Assert.Contains("checksum", r.Err);
    }

    [Fact]
    public void ManifestsWithoutChecksumsStillLoadUnverified()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors");
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "diagonal", "--out", factors, "--quiet").Code);
        // As written before checksums were recorded: no "checksums" map, no sidecar checksum.
        string mpath = Path.Combine(factors, "manifest.json");
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(mpath))!.AsObject();
        Assert.True(node.Remove("checksums"));
        File.WriteAllText(mpath, node.ToJsonString());
        foreach (var side in Directory.GetFiles(run, "epoch-*.json"))
        {
            var s = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(side))!.AsObject();
            Assert.True(s.Remove("checksum"));
            File.WriteAllText(side, s.ToJsonString());
        }
        var r = Run("scores", "self", "--run", run, "--factors", factors, "--out", dir.File("s"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
    }

    // ---- non-finite weights and duplicate seeds ----

    [Fact]
    public void ImportRefusesNonFiniteWeightsNamingTheTensorAndLeavesNoRun()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string bad = dir.File("bad.safetensors");
        using (var f = SafeTensors.Load(Path.Combine(run, "epoch-0002.safetensors")))
        {
            f["fc.weight"][3, 7] = tensor(float.NaN);
            SafeTensors.Save(bad, f.Tensors);
        }
        var r = Run("import", "--model", "logreg", "--weights", bad, "--data", "embedded", "--train-count", "100", "--out", dir.File("imp"), "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("fc.weight", r.Err);
        Assert.Contains("bad.safetensors", r.Err);
        Assert.False(File.Exists(Path.Combine(dir.File("imp"), "run.json")));
        // Nor does a bad file disturb a run it was to replace.
        r = Run("import", "--model", "logreg", "--weights", bad, "--data", "embedded", "--train-count", "100", "--out", run, "--overwrite", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Equal(2, Checkpoint.List(run).Count);
    }

    [Theory]
    [InlineData("evaluate", "remove")]
    [InlineData("curate", null)]
    public void DuplicateSeedsAreRefusedAtParseTime(string command, string? sub)
    {
        using var dir = new TempDir();
        var args = new List<string> { command };
        if (sub is not null) args.Add(sub);
        args.AddRange(new[] { "--run", dir.File("no-run"), "--seeds", "0,1,0" });
        var r = Run(args.ToArray());
        Assert.Equal(2, r.Code);
        Assert.Contains("--seeds", r.Err);
        Assert.Contains("0 is given 2 times", r.Err);
    }
}
