using System.Globalization;
using System.Text.RegularExpressions;

namespace InfluenceSharp.Storage;

/// <summary>
/// The locking rule every writer of a partitioned output (factors, scores, a feature store, an LDS
/// cache) follows, built on <see cref="DirectoryLock"/>:
/// <list type="bullet">
/// <item>A writer without a shard holds the whole-output lock (name "") for the whole stage, so a
/// second such writer is refused at once, naming the first.</item>
/// <item>A shard does not hold the whole-output lock (shards of one job run together); it checks that
/// no whole-output writer holds it, then locks each partition it computes ("partition-NNNNN"),
/// re-checking under the lock that the partition is still missing.</item>
/// <item>The manifest is checked or written under the "manifest" lock, held briefly (others wait).
/// The merge of the partials into the final files happens under the same lock; a shard that finds
/// it taken leaves the merge to its holder.</item>
/// </list>
/// Temp files (".NAME.tmp-PID-GUID", ".NAME.partial-PID-GUID") whose process is gone are deleted when
/// a writer starts, and a completed stage removes its partials.
/// </summary>
public static class OutputLock
{
    /// <summary>How long a brief lock (manifest, merge) is waited for.</summary>
    public static TimeSpan BriefWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The stage lock: the whole-output lock for a non-sharded writer; for a shard, a check
    /// that no whole-output writer holds it (returns null).</summary>
    public static DirectoryLock? Stage(string directory, string what, Shard shard)
    {
        if (shard.Count <= 1) return DirectoryLock.Acquire(directory, what);
        DirectoryLock.Probe(directory, what, "", TimeSpan.FromSeconds(2));
        return null;
    }

    /// <summary>The lock of one partition (block, subset) of an output; its files are kept in
    /// <paramref name="directory"/>/.locks, out of the way of the partition files.</summary>
    public static DirectoryLock Partition(string directory, string what, int partition) =>
        DirectoryLock.Acquire(Path.Combine(directory, ".locks"), $"{what}, partition {partition}", $"partition-{partition:D5}", BriefWait);

    /// <summary>The lock of one query block of one partition of an output.</summary>
    public static DirectoryLock Partition(string directory, string what, int partition, int queryBlock) =>
        DirectoryLock.Acquire(Path.Combine(directory, ".locks"), $"{what}, partition {partition}, query block {queryBlock}", $"partition-{partition:D5}-q{queryBlock:D5}", BriefWait);

    /// <summary>The manifest lock, held while checking or writing the manifest.</summary>
    public static DirectoryLock Manifest(string directory, string what) =>
        DirectoryLock.Acquire(directory, what + " (manifest)", "manifest", BriefWait);

    /// <summary>The manifest lock for the merge: null when another process holds it (it is merging).</summary>
    public static DirectoryLock? TryMerge(string directory, string what) =>
        DirectoryLock.TryAcquire(directory, what + " (merge)", "manifest");

    static readonly Regex TempName = new(@"^\..+\.(tmp|partial)-(\d+)-[0-9a-f]{32}$", RegexOptions.CultureInvariant);

    /// <summary>Deletes temp files left in <paramref name="directory"/> (not recursively) by processes
    /// that are gone (killed while writing). Returns how many were deleted.</summary>
    public static int CleanStaleTemps(string directory)
    {
        if (!Directory.Exists(directory)) return 0;
        int n = 0;
        foreach (var f in Directory.GetFiles(directory, ".*"))
        {
            var m = TempName.Match(Path.GetFileName(f));
            if (!m.Success || !int.TryParse(m.Groups[2].Value, NumberStyles.None, CultureInfo.InvariantCulture, out int pid)) continue;
            if (DirectoryLock.IsAlive(pid)) continue;
            try { File.Delete(f); n++; } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
        return n;
    }

    /// <summary>Removes a partials directory once the stage it served is complete (with any lock files in it).</summary>
    public static void RemovePartials(string partialsDir)
    {
        try { if (Directory.Exists(partialsDir)) Directory.Delete(partialsDir, recursive: true); }
        catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
