using System.Text.Json;

namespace InfluenceSharp.Storage;

/// <summary>An exclusive, advisory lock on an output (a run directory, factors, scores, a store, a
/// cache, or one partition of them), held until disposed. Two processes that would write the same
/// output cannot both hold it: the second gets an <see cref="OutputLockedException"/> naming the
/// holder (PID, host, command line, start time).
/// <para>The lock is the operating system's: a file opened with <see cref="FileShare.None"/>, which
/// .NET takes with flock(LOCK_EX | LOCK_NB) on Unix and a share-mode lock on Windows. The kernel
/// drops it when the holder exits, however it exits (SIGKILL included), so a lock is never stale:
/// the next writer simply takes it. A small JSON file beside it says who holds it.</para></summary>
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
            throw new OutputLockedException(directory, describeHolder ? CurrentHolder(infoPath) : null);
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
    /// for a record of a live process (on this host) before settling for what is there.</summary>
    static Holder? CurrentHolder(string infoPath)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        while (true)
        {
            var h = ReadHolder(infoPath);
            bool live = h is not null && (h.Host != Environment.MachineName || IsAlive(h.Pid));
            if (live || DateTime.UtcNow > deadline) return h;
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

/// <summary>Another process is writing the same output.</summary>
public sealed class OutputLockedException : InfluenceSharpException
{
    public OutputLockedException(string directory, DirectoryLock.Holder? holder)
        : base(holder is null
            ? $"{directory}: another process is writing here (locked); wait for it to finish or choose another output"
            : $"{directory}: locked by process {holder.Pid} on {holder.Host} since {holder.Started:yyyy-MM-dd HH:mm:ss zzz} ({holder.What}: {holder.Command}); wait for it to finish or choose another output")
    {
        Directory = directory; Holder = holder;
    }

    public string Directory { get; }
    public DirectoryLock.Holder? Holder { get; }
}
