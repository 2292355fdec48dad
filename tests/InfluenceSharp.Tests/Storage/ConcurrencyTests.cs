using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;

namespace InfluenceSharp.Tests.Storage;

/// <summary>Two writers on one output: the second is refused, naming the first; a killed holder's
/// lock is taken over. Process tests start the real `influence` CLI.</summary>
public class ConcurrencyTests
{
    /// <summary>Starts `dotnet influence.dll args` (the CLI the test project builds).</summary>
    internal static Process StartCli(params string[] args)
    {
        string dll = typeof(InfluenceSharp.Cli.Cli).Assembly.Location;
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        return Process.Start(psi)!;
    }

    internal static (int Code, string Out, string Err) RunCli(TimeSpan timeout, params string[] args)
    {
        using var p = StartCli(args);
        var o = p.StandardOutput.ReadToEndAsync();
        var e = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(timeout)) { p.Kill(entireProcessTree: true); throw new TimeoutException($"influence {string.Join(' ', args)} did not finish"); }
        p.WaitForExit();
        return (p.ExitCode, o.Result, e.Result);
    }

    static void WaitFor(Func<bool> condition, Process holder, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!condition())
        {
            if (holder.HasExited) throw new Xunit.Sdk.XunitException($"process A exited ({holder.ExitCode}) before {what}: {holder.StandardError.ReadToEnd()}");
            if (DateTime.UtcNow > deadline) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            Thread.Sleep(50);
        }
    }

    [Fact]
    public void SecondTrainProcessOnOneRunIsRefusedNamingTheFirstAndAKilledHoldersLockIsTakenOver()
    {
        using var dir = new TempDir();
        string run = dir.File("tt4");
        // A: a long training run (it is killed below).
        using var a = StartCli("train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "100000", "--train-count", "200", "--seed", "0", "--quiet");
        _ = a.StandardOutput.ReadToEndAsync();
        string holderFile = Path.Combine(run, ".lock.json");
        try
        {
            WaitFor(() => File.Exists(holderFile), a, "A's lock holder file");
            // B: another run into the same directory.
            var b = RunCli(TimeSpan.FromMinutes(2), "train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "2", "--seed", "7", "--lr", "0.01", "--train-count", "200", "--quiet");
            Assert.Equal(1, b.Code);
            Assert.Contains($"process {a.Id}", b.Err);
            Assert.Contains("training run", b.Err);
            Assert.Contains(Environment.MachineName, b.Err);
        }
        finally
        {
            if (!a.HasExited) a.Kill(entireProcessTree: true);   // SIGKILL: no cleanup in A
            a.WaitForExit();
        }
        Assert.True(File.Exists(holderFile), "the killed holder's record should be left behind (a stale lock)");
        // C: a new writer takes over the stale lock (the kernel dropped A's flock).
        var c = RunCli(TimeSpan.FromMinutes(2), "train", "--out", run, "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "200", "--overwrite", "--quiet");
        Assert.True(c.Code == 0, c.Err);
        Assert.Equal(new[] { 1 }, Checkpoint.List(run).Select(x => x.Info.Epoch));
    }

    static LabeledDataset Train(int n) => Embedded.Split.Train.Subset(Enumerable.Range(0, n).ToArray());

    static readonly ModelSpec Spec = ModelSpec.For("logreg", 1, 28, 28, 10);

    [Fact]
    public void TrainerRefusesARunAnotherWriterHolds()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        using (DirectoryLock.Acquire(run, "training run"))
        {
            var e = Assert.Throws<OutputLockedException>(() => new Trainer(new TrainOptions { Epochs = 1, BatchSize = 30 }).Train(Spec, Train(60), null, run));
            Assert.Contains($"process {Environment.ProcessId}", e.Message);
        }
        Assert.False(File.Exists(Path.Combine(run, "epoch-0001.safetensors")));
    }

    [Fact]
    public void FactorFitRefusesADirectoryAWholeFitHoldsWhileShardsOfOneJobRunTogether()
    {
        using var dir = new TempDir();
        var train = Train(60);
        torch.manual_seed(3);
        var fitter = new FactorFitter(Spec.Create(), new ClassificationTask(), new FactorOptions { Strategy = FactorStrategy.Diagonal, PartitionSize = 20, TrainBatchSize = 20 });
        string factors = dir.File("factors");
        using (DirectoryLock.Acquire(factors, "factors"))
        {
            Assert.Throws<OutputLockedException>(() => fitter.Fit(train, factors));
            Assert.Throws<OutputLockedException>(() => fitter.Fit(train, factors, new Shard(0, 2)));
        }
        // A held partition lock of shard 1 does not stop shard 0.
        using (DirectoryLock.Acquire(Path.Combine(factors, "partials", ".locks"), "shard 1", "partition-00001"))
            Assert.Null(fitter.Fit(train, factors, new Shard(0, 2)));
        Assert.NotNull(fitter.Fit(train, factors, new Shard(1, 2)));
    }

    [Fact]
    public void ScoresRefuseAnOutputAnotherWriterHolds()
    {
        using var dir = new TempDir();
        var train = Train(60);
        string scores = dir.File("scores");
        var manifest = new ScoresManifest
        {
            Kind = "self", Method = "x", Settings = new(), ModelFingerprint = "m", TrainFingerprint = "t", TrainCount = train.Count, PartitionSize = 20,
        };
        using (DirectoryLock.Acquire(scores, "self-influence scores"))
            Assert.Throws<OutputLockedException>(() => PartitionedScoring.Self(null!, train, scores, manifest, Shard.All, new InfluenceSharp.Diagnostics.Profiler()));
        Assert.False(File.Exists(Path.Combine(scores, "manifest.json")));
    }

    [Fact]
    public void FeatureStoreBuildRefusesAStoreAnotherWriterHolds()
    {
        using var dir = new TempDir();
        string store = dir.File("store");
        torch.manual_seed(4);
        var cps = new List<TracInCheckpoint> { new(Spec.Create(), 0.1) };
        using var m = new TracInCPFast(cps, null, new TracInFastOptions { StoreDirectory = store, BlockSize = 20, TrainBatchSize = 20 });
        using (DirectoryLock.Acquire(store, "feature store"))
            Assert.Throws<OutputLockedException>(() => m.BuildStore(Train(60)));
        Assert.Empty(Directory.GetFiles(Path.Combine(store, "blocks"), "*.safetensors"));
    }

    [Fact]
    public void LdsRunRefusesACacheAnotherWriterHolds()
    {
        using var dir = new TempDir();
        string lds = dir.File("lds");
        var ldsRun = new LdsRun(lds, Spec, new TrainOptions { Epochs = 1, BatchSize = 30 }, Train(60), Train(5), new LdsOptions { Subsets = 2 });
        using (DirectoryLock.Acquire(lds, "LDS retraining"))
            Assert.Throws<OutputLockedException>(() => ldsRun.Run());
        Assert.Equal(2, ldsRun.Pending().Length);
    }
}
