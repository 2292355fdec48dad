using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>The shared (read) locks a command holds on what it reads (runs, factors) until it ends,
/// so that no writer (train or import with or without --overwrite, fit-factors) replaces them
/// meanwhile: such a writer is refused, naming this command (see <see cref="DirectoryLock"/>).</summary>
internal static class ReadLocks
{
    static readonly List<DirectoryLock> held = new();
    static readonly HashSet<string> dirs = new(StringComparer.Ordinal);

    /// <summary>Locks a run directory, or the directory of a checkpoint file, for reading.</summary>
    public static void Run(string runDirOrCheckpoint)
    {
        string full = Path.GetFullPath(runDirOrCheckpoint);
        Hold(Directory.Exists(full) ? full : Path.GetDirectoryName(full)!, "reading the run");
    }

    /// <summary>Locks a factors directory for reading.</summary>
    public static void Factors(string dir) => Hold(Path.GetFullPath(dir), "reading the factors");

    static void Hold(string dir, string what)
    {
        if (!dirs.Add(dir)) return;
        if (DirectoryLock.AcquireShared(dir, what) is { } l) held.Add(l);
    }

    /// <summary>Lets go of every read lock (at the end of a command).</summary>
    public static void ReleaseAll()
    {
        foreach (var l in held) l.Dispose();
        held.Clear();
        dirs.Clear();
    }
}
