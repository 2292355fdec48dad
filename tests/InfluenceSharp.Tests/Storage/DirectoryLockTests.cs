using InfluenceSharp.Storage;

namespace InfluenceSharp.Tests.Storage;

public class DirectoryLockTests
{
    [Fact]
    public void SecondWriterIsRefusedWithTheHolderNamedAndTheLockIsFreedOnDispose()
    {
        using var dir = new TempDir();
        string outDir = dir.File("out");
        using (var held = DirectoryLock.Acquire(outDir, "training run"))
        {
            var e = Assert.Throws<OutputLockedException>(() => DirectoryLock.Acquire(outDir, "another run"));
            Assert.Contains(outDir, e.Message);
            Assert.Contains($"process {Environment.ProcessId}", e.Message);
            Assert.Contains(Environment.MachineName, e.Message);
            Assert.Contains("training run", e.Message);
            Assert.Equal(Environment.ProcessId, e.Holder!.Pid);
            // Named locks are independent: one per partition lets shards of one job run together.
            using var p0 = DirectoryLock.Acquire(outDir, "partition 0", "partition-0000");
            using var p1 = DirectoryLock.Acquire(outDir, "partition 1", "partition-0001");
            Assert.Throws<OutputLockedException>(() => DirectoryLock.Acquire(outDir, "partition 0 again", "partition-0000"));
        }
        using var again = DirectoryLock.Acquire(outDir, "next run");
        Assert.Equal("next run", DirectoryLock.ReadHolder(again.Path + ".json")!.What);
    }

    [Fact]
    public async Task AWaitRetriesWhileABriefHolderHasNoRecordYet()
    {
        // Shards of a Slurm array start together and each probes the whole-output lock for a moment;
        // a probe that finds another's probe (lock taken, holder record not yet written or already
        // deleted) must retry within its wait, not spend it looking for the record.
        using var dir = new TempDir();
        string outDir = dir.File("out");
        var held = DirectoryLock.Acquire(outDir, "a shard's probe");
        File.Delete(held.Path + ".json");
        var release = Task.Run(async () => { await Task.Delay(300); held.Dispose(); });
        var sw = System.Diagnostics.Stopwatch.StartNew();
        DirectoryLock.Probe(outDir, "another shard", "", TimeSpan.FromSeconds(2));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(1.5), $"took {sw.Elapsed.TotalSeconds:F2} s");
        await release;
        using var free = DirectoryLock.TryAcquire(outDir, "next");
        Assert.NotNull(free);
    }
}
