using System.Text.Json;

namespace InfluenceSharp.Storage;

/// <summary>An advisory lock on an output (a run directory, factors, scores, a store, a cache, or one
/// partition of them), held until disposed: exclusive for a writer, shared for a reader. Two
/// processes that would write the same output cannot both hold it, and a writer cannot take it while
/// a reader holds it (nor a reader while a writer does): the one that comes second gets an
/// <see cref="OutputLockedException"/> naming the holder (PID, host, command line, start time).
/// <para>The lock is the operating system's: the lock file opened with <see cref="FileShare.None"/>
/// (a writer), which .NET takes with flock(LOCK_EX | LOCK_NB) on Unix and a share-mode lock on
/// Windows, or with <see cref="FileShare.ReadWrite"/> for reading (flock(LOCK_SH | LOCK_NB)). The
/// kernel drops it when the holder exits, however it exits (SIGKILL included), so a lock is never
/// stale: the next writer simply takes it. A small JSON file beside it says who holds it (one per
/// reader: ".lock.reader-PID-ID.json").</para>
/// <para>A feature store lives in its run directory and is only ever added to, so the run's read
/// lock covers it: what could remove it (train or import with --overwrite) is refused.</para></summary>
public sealed class DirectoryLock : IDisposable
{
    /// <summary>Who holds a lock, as written beside it.</summary>
    public sealed record Holder(int Pid, string Host, string Command, DateTimeOffset Started, string What);

    private readonly FileStream stream;
    private readonly string infoPath;
    private bool disposed;

    private DirectoryLock(FileStream stream, string infoPath, string path)
    {
        this.stream = stream; this.infoPath = infoPath; Path = path;
    }

    /// <summary>Takes a shared (read) lock named <paramref name="name"/> on an existing
    /// <paramref name="directory"/>, so that no writer replaces what is read while it is read; throws
    /// <see cref="OutputLockedException"/> at once if a writer holds it. Returns null (no lock) when
    /// the directory does not exist or cannot hold a lock file (read-only media): reading goes on.</summary>
    /// <param name="directory">The directory read (a run, factors).</param>
    /// <param name="what">What the reader does, for a refused writer's message.</param>
    /// <param name="name">The lock's name ("" for the whole output, as writers take it).</param>
    public static DirectoryLock? AcquireShared(string directory, string what, string name = "")
    {
        if (!Directory.Exists(directory)) return null;
        string lockPath = System.IO.Path.Combine(directory, $".lock{(name.Length > 0 ? "-" + name : "")}");
        FileStream fs;
        try
        {
            fs = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.Read, FileShare.ReadWrite, 1, FileOptions.None);
        }
        catch (IOException e) when (IsSharingViolation(e))
        {
            var (h, reading) = CurrentHolder(lockPath);
            throw new OutputLockedException(directory, h, reading, forReader: true);
        }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException)
        {
            return null;   // a read-only directory: nobody can write there either
        }
        CleanStaleReaders(lockPath);
        string infoPath = $"{lockPath}.reader-{Environment.ProcessId}-{Guid.NewGuid():N}.json";
        var holder = new Holder(Environment.ProcessId, Environment.MachineName, CommandLine(), DateTimeOffset.Now, what);
        try { AtomicFile.WriteAllText(infoPath, JsonSerializer.Serialize(holder, Json.Options)); }
        catch (Exception e) when (e is UnauthorizedAccessException or IOException) { }
        return new DirectoryLock(fs, infoPath, lockPath);
    }

    /// <summary>The recorded readers of a lock file that are alive (records of killed readers are
    /// skipped).</summary>
    static IEnumerable<Holder> LiveReaders(string lockPath)
    {
        string dir = System.IO.Path.GetDirectoryName(lockPath)!;
        string prefix = System.IO.Path.GetFileName(lockPath) + ".reader-";
        string[] files;
        try { files = Directory.GetFiles(dir, prefix + "*.json"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { yield break; }
        foreach (var f in files)
            if (ReadHolder(f) is { } h && (h.Host != Environment.MachineName || IsAlive(h.Pid)))
                yield return h;
    }

    /// <summary>Deletes the records of readers on this host that are gone.</summary>
    static void CleanStaleReaders(string lockPath)
    {
        string dir = System.IO.Path.GetDirectoryName(lockPath)!;
        string prefix = System.IO.Path.GetFileName(lockPath) + ".reader-";
        try
        {
            foreach (var f in Directory.GetFiles(dir, prefix + "*.json"))
                if (ReadHolder(f) is { } h && h.Host == Environment.MachineName && !IsAlive(h.Pid))
                    File.Delete(f);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>Takes the lock named <paramref name="name"/> in <paramref name="directory"/> (created
    /// if missing), or throws <see cref="OutputLockedException"/> at once if another process holds it.
    /// <paramref name="what"/> says what is being written (for the other process's message).</summary>
    public static DirectoryLock Acquire(string directory, string what, string name = "") => Acquire(directory, what, name, TimeSpan.Zero);

    /// <summary>Like <see cref="Acquire(string, string, string)"/>, but waits up to
    /// <paramref name="wait"/> for a holder to let go (for locks held briefly, such as a manifest's).</summary>
    public static DirectoryLock Acquire(string directory, string what, string name, TimeSpan wait)
    {
        // Only the last attempt looks up the holder for the message: that look-up may wait up to
        // two seconds for a holder's record (none exists while a brief holder, such as a shard's
        // probe, takes or lets go of the lock), which would use up the whole wait on one retry.
        var deadline = DateTime.UtcNow + wait;
        while (true)
        {
            bool last = DateTime.UtcNow >= deadline;
            try { return AcquireOnce(directory, what, name, describeHolder: last); }
            catch (OutputLockedException) when (!last) { Thread.Sleep(50); }
        }
    }

    /// <summary>Takes the lock if it is free, else returns null (no waiting, no exception).</summary>
    public static DirectoryLock? TryAcquire(string directory, string what, string name = "")
    {
        try { return AcquireOnce(directory, what, name, describeHolder: false); }
        catch (OutputLockedException) { return null; }
    }

    /// <summary>Throws <see cref="OutputLockedException"/> (waiting up to <paramref name="wait"/>) if
    /// another holder has the lock now; takes it only for the moment of the check. A shard uses it to
    /// refuse an output that a non-sharded writer holds as a whole.</summary>
    public static void Probe(string directory, string what, string name, TimeSpan wait) => Acquire(directory, what, name, wait).Dispose();

    static DirectoryLock AcquireOnce(string directory, string what, string name, bool describeHolder)
    {
        Directory.CreateDirectory(directory);
        string lockPath = System.IO.Path.Combine(directory, $".lock{(name.Length > 0 ? "-" + name : "")}");
        string infoPath = lockPath + ".json";
        FileStream fs;
        try
        {
            fs = new FileStream(lockPath, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
        }
        catch (IOException e) when (IsSharingViolation(e))
        {
            if (!describeHolder) throw new OutputLockedException(directory, null);
            var (h, reading) = CurrentHolder(lockPath);
            throw new OutputLockedException(directory, h, reading);
        }
        var holder = new Holder(Environment.ProcessId, Environment.MachineName, CommandLine(), DateTimeOffset.Now, what);
        // The holder record is written after the lock is held, atomically, so a reader sees either
        // the previous holder's record or ours, never a half-written one.
        AtomicFile.WriteAllText(infoPath, JsonSerializer.Serialize(holder, Json.Options));
        return new DirectoryLock(fs, infoPath, lockPath);
    }

    /// <summary>The recorded holder of a lock file, if any (null when none was recorded).</summary>
    public static Holder? ReadHolder(string infoPath)
    {
        try { return File.Exists(infoPath) ? JsonSerializer.Deserialize<Holder>(File.ReadAllText(infoPath), Json.Options) : null; }
        catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The holder of a lock found taken. Its record is written just after the lock is taken,
    /// and a killed holder's record stays behind until the next holder replaces it, so wait briefly
    /// for a record of a live process (on this host) before settling for what is there. A live
    /// reader (the lock is shared) is the holder when no live writer is recorded.</summary>
    static (Holder? Holder, bool Reading) CurrentHolder(string lockPath)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        while (true)
        {
            var h = ReadHolder(lockPath + ".json");
            if (h is not null && (h.Host != Environment.MachineName || IsAlive(h.Pid))) return (h, false);
            if (LiveReaders(lockPath).FirstOrDefault() is { } r) return (r, true);
            if (DateTime.UtcNow > deadline) return (h, false);
            Thread.Sleep(20);
        }
    }

    /// <summary>Whether a process with this id runs on this machine.</summary>
    internal static bool IsAlive(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try { using var p = System.Diagnostics.Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    static bool IsSharingViolation(IOException e) =>
        // Unix: EWOULDBLOCK from flock surfaces as an IOException with this HResult; Windows: ERROR_SHARING_VIOLATION.
        e.HResult == 11 || e.HResult == 35 || (e.HResult & 0xFFFF) == 32 || e.Message.Contains("being used by another process", StringComparison.OrdinalIgnoreCase);

    static string CommandLine()
    {
        var args = Environment.GetCommandLineArgs();
        string cmd = string.Join(' ', args.Select(a => a.Contains(' ') ? $"\"{a}\"" : a));
        return cmd.Length > 300 ? cmd[..300] + " ..." : cmd;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        // Delete the holder record before releasing, while we still own the lock.
        try { File.Delete(infoPath); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        stream.Dispose();
    }
}

/// <summary>Another process is writing the same output, or reading what this one would write (or,
/// for a reader, writing what it would read).</summary>
public sealed class OutputLockedException : InfluenceSharpException
{
    /// <param name="directory">The locked directory.</param>
    /// <param name="holder">Who holds it, if recorded.</param>
    /// <param name="reading">The holder is a reader (the lock is shared).</param>
    /// <param name="forReader">The refused process wanted to read.</param>
    public OutputLockedException(string directory, DirectoryLock.Holder? holder, bool reading = false, bool forReader = false)
        : base(Describe(directory, holder, reading, forReader))
    {
        Directory = directory; Holder = holder; Reading = reading;
    }

    static string Describe(string directory, DirectoryLock.Holder? holder, bool reading, bool forReader)
    {
        string advice = forReader ? "wait for it to finish" : "wait for it to finish or choose another output";
        if (holder is null)
            return forReader ? $"{directory}: another process is writing here (locked); {advice}"
                : $"{directory}: another process is writing or reading here (locked); {advice}";
        string since = $"process {holder.Pid} on {holder.Host} since {holder.Started:yyyy-MM-dd HH:mm:ss zzz} ({holder.What}: {holder.Command})";
        if (reading && holder.Pid == Environment.ProcessId && holder.Host == Environment.MachineName)
            return $"{directory}: being read by process {holder.Pid}, this one ({holder.What}), which cannot also write there; choose another output";
        return reading ? $"{directory}: being read by {since}; {advice}" : $"{directory}: locked by {since}; {advice}";
    }

    public string Directory { get; }
    public DirectoryLock.Holder? Holder { get; }
    /// <summary>The holder is a reader.</summary>
    public bool Reading { get; }
}
