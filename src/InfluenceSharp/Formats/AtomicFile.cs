namespace InfluenceSharp.Formats;

/// <summary>Writes files so that a reader never sees a half-written one: write a temp file in the
/// same directory, flush it to disk, then rename it over the target.</summary>
public static class AtomicFile
{
    public static void Write(string path, Action<Stream> write) => Write(path, write, null);

    /// <summary>As <see cref="Write(string, Action{Stream})"/>; <paramref name="beforeCommit"/> runs
    /// with the complete temp file's path just before it is renamed into place (e.g. to record its
    /// checksum first, so that no artifact appears unrecorded); if it throws, nothing is renamed.</summary>
    public static void Write(string path, Action<Stream> write, Action<string>? beforeCommit)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            beforeCommit?.Invoke(tmp);
            File.Move(tmp, full, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    public static void WriteAllBytes(string path, ReadOnlySpan<byte> bytes)
    {
        byte[] copy = bytes.ToArray();
        Write(path, s => s.Write(copy));
    }

    public static void WriteAllText(string path, string text) =>
        WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(text));
}
