namespace InfluenceSharp.Cli;

/// <summary>Output directories of one command: checked and created before the work starts, with
/// errors that say what is wrong with the path (a file where a directory is meant, a missing or
/// unwritable parent); the directories a command created are removed again when it fails and they
/// hold nothing but lock files, empty folders and a stage manifest.</summary>
internal static class OutputDirectory
{
    static readonly AsyncLocal<List<string>?> created = new();

    /// <summary>Starts tracking the directories created by one command line.</summary>
    public static void Begin() => created.Value = new List<string>();

    /// <summary>Checks <paramref name="path"/> as the directory given by <paramref name="option"/>
    /// and creates it (with missing parents), remembering what it created; returns the path.</summary>
    public static string Create(string option, string path)
    {
        string full = Path.GetFullPath(path);
        if (File.Exists(full))
            throw new UsageException($"{option} {path}: is a file; {option} names a directory (choose another path)");
        if (Directory.Exists(full))
        {
            RequireWritable(option, path, full);
            return path;
        }
        // The ancestors that do not exist yet, top-most first; one of them that is a file is the user's mistake.
        var missing = new List<string>();
        for (string? d = full; d is not null && !Directory.Exists(d); d = Path.GetDirectoryName(d))
        {
            if (File.Exists(d))
                throw new UsageException($"{option} {path}: {d} is a file, not a directory");
            missing.Insert(0, d);
        }
        string parent = missing.Count > 0 ? Path.GetDirectoryName(missing[0]) ?? "/" : full;
        try { Directory.CreateDirectory(full); }
        catch (UnauthorizedAccessException)
        {
            throw new InfluenceSharpException($"{option} {path}: cannot create the directory: no permission to write in {parent}");
        }
        catch (IOException e)
        {
            throw new InfluenceSharpException($"{option} {path}: cannot create the directory in {parent} ({Reason(e)})");
        }
        created.Value?.AddRange(missing);
        return path;
    }

    /// <summary>Like <see cref="Create(string, string)"/> for a directory the command chose itself
    /// (a default inside the run directory).</summary>
    public static string Create(string path) => Create("output directory", path);

    static void RequireWritable(string option, string path, string full)
    {
        string probe = Path.Combine(full, $".write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (UnauthorizedAccessException)
        {
            throw new InfluenceSharpException($"{option} {path}: the directory is not writable (permission denied)");
        }
        catch (IOException e)
        {
            throw new InfluenceSharpException($"{option} {path}: cannot write in the directory ({Reason(e)})");
        }
    }

    /// <summary>A short reason for an I/O failure, without .NET's sentence about the path.</summary>
    internal static string Reason(IOException e) => e switch
    {
        FileNotFoundException or DirectoryNotFoundException => "the file system does not allow it here",
        PathTooLongException => "the path is too long",
        _ when e.HResult == 28 || e.Message.Contains("space", StringComparison.OrdinalIgnoreCase) => "no space left on the device",
        _ when e.HResult == 30 || e.Message.Contains("read-only", StringComparison.OrdinalIgnoreCase) => "read-only file system",
        _ => e.Message,
    };

    /// <summary>After a failed command: removes the directories it created that hold nothing of
    /// value (only lock files, no-longer-needed folders and a stage manifest), deepest first.</summary>
    public static void RemoveCreatedAfterFailure()
    {
        var list = created.Value;
        if (list is null) return;
        foreach (var dir in list.Distinct().OrderByDescending(d => d.Length))
        {
            try
            {
                if (!Directory.Exists(dir) || !OnlyLeftovers(dir, top: true)) continue;
                // The locks stay held until the folder is gone, so no other process starts in it meanwhile.
                var held = HoldAllLocks(dir);
                if (held is null) continue;
                try { Directory.Delete(dir, recursive: true); }
                finally { foreach (var h in held) h.Dispose(); }
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        list.Clear();
    }

    static bool IsLock(string name) => name.StartsWith(".lock", StringComparison.Ordinal) || name.StartsWith(".write-test-", StringComparison.Ordinal);

    static bool OnlyLeftovers(string dir, bool top)
    {
        foreach (var f in Directory.GetFiles(dir))
        {
            string n = Path.GetFileName(f);
            if (IsLock(n) || (top && n == "manifest.json")) continue;
            return false;
        }
        return Directory.GetDirectories(dir).All(d => OnlyLeftovers(d, top: false));
    }

    /// <summary>Every lock file under <paramref name="dir"/>, held exclusively; null when another
    /// process holds one of them.</summary>
    static List<FileStream>? HoldAllLocks(string dir)
    {
        var held = new List<FileStream>();
        foreach (var f in Directory.GetFiles(dir, ".lock*", SearchOption.AllDirectories))
        {
            if (f.EndsWith(".json", StringComparison.Ordinal)) continue;
            try { held.Add(new FileStream(f, FileMode.Open, FileAccess.ReadWrite, FileShare.None)); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                foreach (var h in held) h.Dispose();
                return null;
            }
        }
        return held;
    }
}
