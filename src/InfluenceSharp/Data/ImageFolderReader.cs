using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>
/// Reads <c>imagefolder:DIR</c>: one sub-directory per class (class index = position of the folder
/// name in ordinal order; the names are the data set's class names), holding PNG, JPEG or BMP
/// images (in sub-folders too) of any size. Files with other extensions and hidden entries are
/// skipped. Links to directories are followed, except a link to a directory that contains the link
/// (a loop such as <c>a/loop -> ..</c>), and every real directory is read once per class folder.
/// With <c>DIR/train</c> and <c>DIR/test</c> (or <c>DIR/val</c>) the class folders are under each and the test classes must be train classes; otherwise a seeded split stratified by
/// class holds out <c>test-fraction</c> (default 0.2; seed <c>split-seed</c>, default 0).
/// Every image is decoded to <c>channels</c> (1 = luminance, 3 = RGB; default: 1 when every image's
/// header says grey, else 3) and resized bilinearly to <c>size</c> (default: the images' size when
/// they all share one; otherwise --image-size is required). The decoded set is cached in
/// <c>DIR/.influencesharp-cache</c> (or, when DIR is not writable, the user's local application data)
/// as one uint8 file [N, C, H, W] (safetensors), written image block by image block while decoding
/// in parallel, and read from it image by image: no array holds every image, and a subset or split
/// is a view of it. The cache key is the file list, a SHA-256 of every file's content and the
/// options, so a second load reads (and hashes) the files instead of decoding them, and an image
/// replaced by another of the same size and modification time is decoded again.
/// </summary>
public static class ImageFolderReader
{
    public static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp" };
    public const string CacheDirName = ".influencesharp-cache";
    const string CacheFormat = "influencesharp-imagefolder-cache/2";

    sealed record Entry(string Path, string Relative, int Label, bool Test, long Size, long MTimeTicks);

    public static DataSplit Load(DataSpec spec, IProgress<ProgressUpdate>? progress = null)
    {
        string dir = Path.GetFullPath(spec.Path!);
        if (!Directory.Exists(dir)) throw new InfluenceSharpException($"imagefolder:{dir}: directory not found");
        string? trainDir = Directory.Exists(Path.Combine(dir, "train")) ? Path.Combine(dir, "train") : null;
        string? testDir = trainDir is null ? null
            : Directory.Exists(Path.Combine(dir, "test")) ? Path.Combine(dir, "test")
            : Directory.Exists(Path.Combine(dir, "val")) ? Path.Combine(dir, "val") : null;
        if (trainDir is not null && testDir is null)
            throw new InfluenceSharpException($"{dir}: has a train/ folder but no test/ or val/ beside it (for a seeded split, put the class folders directly in {dir})");
        var classes = ClassFolders(trainDir ?? dir);
        if (classes.Length < 2)
            throw new InfluenceSharpException($"{trainDir ?? dir}: {classes.Length} class folder(s); an image folder needs one sub-directory per class, at least two");
        var entries = new List<Entry>();
        for (int c = 0; c < classes.Length; c++) entries.AddRange(Images(Path.Combine(trainDir ?? dir, classes[c]), c, false));
        if (testDir is not null)
        {
            foreach (var name in ClassFolders(testDir))
            {
                int c = Array.IndexOf(classes, name);
                if (c < 0) throw new InfluenceSharpException($"{Path.Combine(testDir, name)}: class folder '{name}' is not among the training classes ({string.Join(", ", classes)})");
                entries.AddRange(Images(Path.Combine(testDir, name), c, true));
            }
        }
        if (!entries.Any(e => e.Test) && testDir is not null)
            throw new InfluenceSharpException($"{testDir}: no images (PNG, JPEG or BMP) in its class folders");

        var requestedSize = spec["size"] is { } s ? DataSpec.ParseSize(s, "size") : ((int, int)?)null;
        int? requestedChannels = spec["channels"] is { } ch ? int.Parse(ch, CultureInfo.InvariantCulture) : null;
        // The key of the options as given; a decoded set is stored under the key of the resolved
        // options (what the run records), with a reference from the given one.
        var hashes = ContentHashes(entries, progress);
        string key = CacheKey(entries, hashes, spec["size"], spec["channels"]);
        var (store, channels, height, width) = ReadCache(dir, key, entries.Count) ?? Decode(dir, key, entries, hashes, requestedSize, requestedChannels, progress);

        var labels = entries.Select(e => e.Label).ToArray();
        var all = new ImageDataset($"imagefolder:{Path.GetFileName(dir)}", store, null, labels, channels, height, width, classes.Length, classes);
        all = (ImageDataset)all.WithSources(entries.Select(e => ExampleSource.OfFile(dir, Path.GetRelativePath(dir, e.Path))).ToArray());
        var resolved = spec.Set("size", $"{height}x{width}").Set("channels", channels.ToString(CultureInfo.InvariantCulture));
        ImageDataset train, test;
        if (testDir is not null)
        {
            train = all.Subset(Enumerable.Range(0, entries.Count).Where(i => !entries[i].Test).ToArray(), "imagefolder-train");
            test = all.Subset(Enumerable.Range(0, entries.Count).Where(i => entries[i].Test).ToArray(), "imagefolder-test");
        }
        else
        {
            var (tr, te) = DataSource.StratifiedSplit(labels, classes.Length, spec.TestFraction, spec.SplitSeed);
            train = all.Subset(tr, "imagefolder-train");
            test = all.Subset(te, "imagefolder-test");
            resolved = resolved.Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        }
        if (test.Count == 0) throw new InfluenceSharpException($"{dir}: the test split is empty (too few images per class for test-fraction {spec.TestFraction})");
        return new DataSplit(train, test, new DataSpec(DataKind.ImageFolder, dir, resolved.Query).ToString());
    }

    static string[] ClassFolders(string root) =>
        Directory.GetDirectories(root).Select(Path.GetFileName).OfType<string>()
            .Where(n => !n.StartsWith('.')).OrderBy(n => n, StringComparer.Ordinal).ToArray();

    static IEnumerable<Entry> Images(string classDir, int label, bool test)
    {
        var files = ImageFiles(classDir);
        if (files.Count == 0) throw new InfluenceSharpException($"{classDir}: class folder holds no images (PNG, JPEG or BMP)");
        foreach (var f in files)
        {
            var info = new FileInfo(f);
            yield return new Entry(f, Path.GetRelativePath(Path.GetDirectoryName(Path.GetDirectoryName(classDir)!)!, f), label, test, info.Length, info.LastWriteTimeUtc.Ticks);
        }
    }

    /// <summary>The image files under <paramref name="root"/> (sub-folders too; hidden entries
    /// skipped), in ordinal order of their paths. Directory links are followed, except a link to a
    /// directory that contains it (a loop, such as <c>a/loop -> ..</c>), and each real directory is
    /// read once. Unreadable directories are skipped.</summary>
    internal static List<string> ImageFiles(string root)
    {
        var files = new List<string>();
        var comparison = OperatingSystem.IsWindows() || OperatingSystem.IsMacOS() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        var seen = new HashSet<string>(StringComparer.FromComparison(comparison));
        var pending = new Stack<(string Path, string? ParentReal)>();
        pending.Push((root, null));
        while (pending.Count > 0)
        {
            var (d, parentReal) = pending.Pop();
            string real = RealPath(d);
            // A directory that contains the one it is listed in: following it would never end.
            if (parentReal is not null && (parentReal.Equals(real, comparison) || parentReal.StartsWith(Path.TrimEndingDirectorySeparator(real) + Path.DirectorySeparatorChar, comparison)))
                continue;
            if (!seen.Add(real)) continue;
            List<FileSystemInfo> children;
            try { children = new DirectoryInfo(d).EnumerateFileSystemInfos("*", new EnumerationOptions { AttributesToSkip = FileAttributes.Hidden }).ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.SecurityException) { continue; }
            // Sub-directories in ordinal order: which of two paths to one real directory is kept
            // does not depend on the file system's listing order.
            foreach (var e in children.OrderByDescending(e => e.Name, StringComparer.Ordinal))
            {
                if (e.Name.StartsWith('.')) continue;
                if (e is DirectoryInfo) pending.Push((e.FullName, real));
                else if (Extensions.Contains(Path.GetExtension(e.Name).ToLowerInvariant())) files.Add(e.FullName);
            }
        }
        files.Sort(StringComparer.Ordinal);
        return files;
    }

    /// <summary>The canonical path of a directory with every link resolved (identifies it whatever
    /// path led to it).</summary>
    static string RealPath(string dir)
    {
        if (!OperatingSystem.IsWindows())
        {
            IntPtr p = realpath(dir, IntPtr.Zero);
            if (p != IntPtr.Zero)
            {
                try { return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(p) ?? dir; }
                finally { free(p); }
            }
        }
        var info = new DirectoryInfo(dir);
        return Path.TrimEndingDirectorySeparator(Path.GetFullPath(info.LinkTarget is null ? dir : info.ResolveLinkTarget(true)?.FullName ?? dir));
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    static extern IntPtr realpath(string path, IntPtr resolved);

    [System.Runtime.InteropServices.DllImport("libc")]
    static extern void free(IntPtr pointer);

    /// <summary>SHA-256 of every file's content (files hashed in parallel), in entry order.</summary>
    static string[] ContentHashes(List<Entry> entries, IProgress<ProgressUpdate>? progress)
    {
        var hashes = new string[entries.Count];
        using var bar = entries.Count >= 2000 ? ProgressReporter.Start(progress, "hashing images", entries.Count, "img") : null;
        int done = 0;
        Parallel.For(0, entries.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, i =>
        {
            try
            {
                using var f = new FileStream(entries[i].Path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
                hashes[i] = Convert.ToHexStringLower(SHA256.HashData(f));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Unreadable now: the decode that follows names the file.
                hashes[i] = "unreadable";
            }
            int d = Interlocked.Increment(ref done);
            if (bar is not null && (d & 255) == 0) lock (bar) bar.Update(d);
        });
        bar?.Complete();
        return hashes;
    }

    static string ResolvedKey(List<Entry> entries, string[] hashes, int c, int h, int w) =>
        CacheKey(entries, hashes, $"{h}x{w}", c.ToString(CultureInfo.InvariantCulture));

    static string CacheKey(List<Entry> entries, string[] hashes, string? size, string? channels)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(Encoding.UTF8.GetBytes($"{CacheFormat}\nsize={size}\nchannels={channels}\n"));
        for (int i = 0; i < entries.Count; i++)
        {
            var e = entries[i];
            h.AppendData(Encoding.UTF8.GetBytes($"{e.Relative}\t{e.Label}\t{e.Test}\t{hashes[i]}\n"));
        }
        return Convert.ToHexStringLower(h.GetHashAndReset())[..24];
    }

    /// <summary>Where the cache of <paramref name="dir"/> lives: DIR/.influencesharp-cache, or the user's
    /// local application data when DIR is not writable.</summary>
    public static IEnumerable<string> CacheDirs(string dir)
    {
        yield return Path.Combine(dir, CacheDirName);
        string local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        if (local.Length == 0) local = Path.GetTempPath();
        string tag = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(dir)))[..12];
        yield return Path.Combine(local, "influencesharp", "data-cache", tag);
    }

    static string CacheFile(string cacheDir, string key) => Path.Combine(cacheDir, $"imagefolder-{key}.safetensors");

    static (PixelStore Store, int C, int H, int W)? ReadCache(string dir, string key, int count)
    {
        foreach (var cd in CacheDirs(dir))
        {
            string path = CacheFile(cd, key);
            if (!File.Exists(path))
            {
                // A reference from the options as given to the options as resolved.
                string reference = Path.Combine(cd, $"imagefolder-{key}.ref");
                if (!File.Exists(reference)) continue;
                try { path = CacheFile(cd, File.ReadAllText(reference).Trim()); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                if (!File.Exists(path)) continue;
            }
            try
            {
                if (OpenCache(path, count) is { } opened) return opened;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InfluenceSharpException or JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
            {
                // A damaged cache file is rebuilt.
            }
        }
        return null;
    }

    /// <summary>Maps a cache file: its header is read and checked (format, uint8 [count, C, H, W],
    /// the file's length); its pixels stay in the file.</summary>
    static (PixelStore Store, int C, int H, int W)? OpenCache(string path, int count)
    {
        long dataStart;
        long[] shape;
        using (var f = File.OpenRead(path))
        {
            Span<byte> len = stackalloc byte[8];
            if (f.Read(len) != 8) return null;
            ulong hlen = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(len);
            if (hlen > 1_000_000 || (long)hlen > f.Length - 8) return null;
            var header = new byte[hlen];
            f.ReadExactly(header);
            using var doc = JsonDocument.Parse(header);
            var root = doc.RootElement;
            if (!root.TryGetProperty("__metadata__", out var meta) || !meta.TryGetProperty("format", out var fmt) || fmt.GetString() != CacheFormat) return null;
            var px = root.GetProperty("pixels");
            if (px.GetProperty("dtype").GetString() != "U8") return null;
            shape = px.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (shape.Length != 4 || shape[0] != count || shape.Skip(1).Any(d => d <= 0 || d > 1 << 16)) return null;
            var offs = px.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            dataStart = 8 + (long)hlen;
            long bytes = shape.Aggregate(1L, (a, b) => a * b);
            if (offs.Length != 2 || offs[0] != 0 || offs[1] != bytes || f.Length != dataStart + bytes) return null;
        }
        int c = (int)shape[1], h = (int)shape[2], w = (int)shape[3];
        return (new FilePixelStore(path, dataStart, (long)c * h * w, c * h * w, count), c, h, w);
    }

    static (PixelStore Store, int C, int H, int W) Decode(string dir, string key, List<Entry> entries, string[] hashes, (int H, int W)? size, int? channels,
        IProgress<ProgressUpdate>? progress)
    {
        if (size is null || channels is null)
        {
            // Headers only: the images' common size and whether any is in colour.
            var sizes = new HashSet<(int H, int W)>();
            bool colour = false;
            foreach (var e in entries)
            {
                var p = ImageFile.Probe(e.Path) ?? throw new InfluenceSharpException($"{e.Path}: not an image in a known format (PNG, JPEG, BMP)");
                sizes.Add((p.Height, p.Width));
                colour |= p.Channels == 3;
            }
            channels ??= colour ? 3 : 1;
            if (size is null)
            {
                if (sizes.Count > 1)
                    throw new InfluenceSharpException($"{dir}: images have {sizes.Count} different sizes ({string.Join(", ", sizes.Take(4).Select(s => $"{s.H}x{s.W}"))}{(sizes.Count > 4 ? ", ..." : "")}); give --image-size H[xW] to resize them");
                size = sizes.First();
            }
        }
        var (h, w) = size.Value;
        int c = channels.Value;
        string resolvedKey = ResolvedKey(entries, hashes, c, h, w);
        foreach (var cd in CacheDirs(dir))
        {
            string path = CacheFile(cd, resolvedKey);
            try
            {
                Directory.CreateDirectory(cd);
                // Atomic (temp file + rename): a concurrent reader sees the old state or the whole file.
                AtomicFile.Write(path, s => DecodeTo(s, dir, entries, c, h, w, progress));
                if (key != resolvedKey) AtomicFile.WriteAllText(Path.Combine(cd, $"imagefolder-{key}.ref"), resolvedKey);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Not writable here: try the next place.
                continue;
            }
            if (OpenCache(path, entries.Count) is { } opened) return opened;
        }
        // No writable place at all: decode into memory (costs memory and a decode per load).
        using var ms = new MemoryStream();
        DecodeTo(ms, dir, entries, c, h, w, progress);
        long pixelBytes = (long)entries.Count * c * h * w;
        var all = ms.GetBuffer().AsSpan((int)(ms.Length - pixelBytes), (int)pixelBytes).ToArray();
        return (new ArrayPixelStore(all, c * h * w), c, h, w);
    }

    /// <summary>Writes the cache file (safetensors: header, then uint8 [N, C, H, W]) to
    /// <paramref name="s"/>, decoding blocks of images in parallel; one block is held in memory.</summary>
    static void DecodeTo(Stream s, string dir, List<Entry> entries, int c, int h, int w, IProgress<ProgressUpdate>? progress)
    {
        int one = c * h * w, n = entries.Count;
        var header = new Dictionary<string, object>
        {
            ["__metadata__"] = new Dictionary<string, string> { ["format"] = CacheFormat, ["images"] = n.ToString(CultureInfo.InvariantCulture) },
            ["pixels"] = new Dictionary<string, object> { ["dtype"] = "U8", ["shape"] = new long[] { n, c, h, w }, ["data_offsets"] = new[] { 0L, (long)n * one } },
        };
        Formats.SafeTensors.WriteHeader(s, header);

        int per = Math.Clamp((32 << 20) / one, 4 * Environment.ProcessorCount, 4096);
        var block = new byte[(long)Math.Min(per, n) * one];
        using var bar = ProgressReporter.Start(progress, "decoding images", n, "img");
        int done = 0;
        for (int start = 0; start < n; start += per)
        {
            int count = Math.Min(per, n - start);
            var errors = new InfluenceSharpException?[count];
            Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, (i, state) =>
            {
                try
                {
                    var img = ImageFile.Load(entries[start + i].Path, c).Resize(h, w);
                    Buffer.BlockCopy(img.Pixels, 0, block, i * one, one);
                }
                catch (InfluenceSharpException e) { errors[i] = e; state.Break(); return; }
                int d = Interlocked.Increment(ref done);
                if (bar is not null && (d & 63) == 0) lock (bar) bar.Update(d);
            });
            // The first bad file in listing order, whatever order the threads met them in.
            if (errors.FirstOrDefault(e => e is not null) is { } first)
                throw new InfluenceSharpException($"{first.Message} (in image folder {dir})", first);
            s.Write(block, 0, count * one);
        }
        bar?.Complete();
    }
}

/// <summary>imagefolder:DIR — a folder per class (see <see cref="ImageFolderReader"/>).</summary>
public sealed class ImageFolderDataReader : DataReader
{
    public override string Prefix => "imagefolder";
    public override string Usage => "imagefolder:DIR";
    public override int Order => 20;
    public override IReadOnlyList<string> Keys => new[] { "size", "channels", "test-fraction", "split-seed" };
    public override DataSplit Load(DataSpec spec, IProgress<ProgressUpdate>? progress) => ImageFolderReader.Load(spec, progress);
}
