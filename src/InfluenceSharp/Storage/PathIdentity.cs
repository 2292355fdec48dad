namespace InfluenceSharp.Storage;

/// <summary>Which file a path names, with symbolic links resolved: used to refuse an input that an
/// output step would delete (the same file reached through another spelling or a link).</summary>
public static class PathIdentity
{
    static StringComparison Comparison => OperatingSystem.IsLinux() ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;

    /// <summary>The absolute path with every symbolic link along it resolved (components that do not
    /// exist are kept as written).</summary>
    public static string RealPath(string path) => Real(Path.GetFullPath(path), 0);

    static string Real(string full, int depth)
    {
        if (depth > 40) return full;   // a link loop: leave the rest unresolved
        string root = Path.GetPathRoot(full) ?? "";
        string cur = root;
        var parts = full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        foreach (var part in parts)
        {
            cur = Path.Combine(cur, part);
            FileSystemInfo info = new FileInfo(cur);
            string? target;
            try { target = info.LinkTarget; }
            catch (IOException) { target = null; }
            catch (UnauthorizedAccessException) { target = null; }
            if (target is not null)
                cur = Real(Path.GetFullPath(target, Path.GetDirectoryName(cur) ?? root), depth + 1);
        }
        return cur;
    }

    /// <summary>The path with its directory resolved but its last component kept: the name a delete
    /// of this path removes (a link itself, not its target).</summary>
    public static string NamedPath(string path)
    {
        string full = Path.GetFullPath(path).TrimEnd(Path.DirectorySeparatorChar);
        string? dir = Path.GetDirectoryName(full);
        return dir is null ? full : Path.Combine(RealPath(dir), Path.GetFileName(full));
    }

    /// <summary>True when <paramref name="path"/> is <paramref name="container"/> or lies inside it
    /// (both absolute, already resolved).</summary>
    public static bool IsSameOrInside(string path, string container)
    {
        container = container.TrimEnd(Path.DirectorySeparatorChar);
        return path.Equals(container, Comparison) || path.StartsWith(container + Path.DirectorySeparatorChar, Comparison);
    }

    /// <summary>True when the file or folder <paramref name="input"/> (as named or through links) is
    /// one of <paramref name="deleted"/> (resolved paths of files and folders about to be deleted)
    /// or lies inside one of them.</summary>
    public static bool AmongDeleted(string input, IEnumerable<string> deleted)
    {
        string named = NamedPath(input), real = RealPath(input);
        return deleted.Any(d => IsSameOrInside(named, d) || IsSameOrInside(real, d));
    }
}
