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
/// skipped. With <c>DIR/train</c> and <c>DIR/test</c> (or <c>DIR/val</c>) the class folders are
/// under each and the test classes must be train classes; otherwise a seeded split stratified by
/// class holds out <c>test-fraction</c> (default 0.2; seed <c>split-seed</c>, default 0).
/// Every image is decoded to <c>channels</c> (1 = luminance, 3 = RGB; default: 1 when every image's
/// header says grey, else 3) and resized bilinearly to <c>size</c> (default: the images' size when
/// they all share one; otherwise --image-size is required). The decoded set is cached in
/// <c>DIR/.influencesharp-cache</c> (or, when DIR is not writable, the user's local application data)
/// under a key of the file list, sizes, modification times and the options, so a second load reads
/// one file instead of decoding every image.
/// </summary>
public static class ImageFolderReader
{
    public static readonly string[] Extensions = { ".png", ".jpg", ".jpeg", ".bmp" };
    public const string CacheDirName = ".influencesharp-cache";
    const string CacheFormat = "influencesharp-imagefolder-cache/1";

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
        string key = CacheKey(entries, spec["size"], spec["channels"]);
        var (pixels, channels, height, width) = ReadCache(dir, key, entries.Count) ?? Decode(dir, key, entries, requestedSize, requestedChannels, progress);

        int size = channels * height * width;
        var labels = entries.Select(e => e.Label).ToArray();
        var all = new ImageDataset($"imagefolder:{Path.GetFileName(dir)}", pixels, labels, channels, height, width, classes.Length, classes);
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
        var files = Directory.EnumerateFiles(classDir, "*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = FileAttributes.Hidden })
            .Where(f => Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()) && !Path.GetFileName(f).StartsWith('.'))
            .OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (files.Count == 0) throw new InfluenceSharpException($"{classDir}: class folder holds no images (PNG, JPEG or BMP)");
        foreach (var f in files)
        {
            var info = new FileInfo(f);
            yield return new Entry(f, Path.GetRelativePath(Path.GetDirectoryName(Path.GetDirectoryName(classDir)!)!, f), label, test, info.Length, info.LastWriteTimeUtc.Ticks);
        }
    }

    static string ResolvedKey(List<Entry> entries, int c, int h, int w) =>
        CacheKey(entries, $"{h}x{w}", c.ToString(CultureInfo.InvariantCulture));

    static string CacheKey(List<Entry> entries, string? size, string? channels)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(Encoding.UTF8.GetBytes($"{CacheFormat}\nsize={size}\nchannels={channels}\n"));
        foreach (var e in entries)
            h.AppendData(Encoding.UTF8.GetBytes($"{e.Relative}\t{e.Label}\t{e.Test}\t{e.Size}\t{e.MTimeTicks}\n"));
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

    static (byte[] Pixels, int C, int H, int W)? ReadCache(string dir, string key, int count)
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
                using var f = SafeTensors.Load(path);
                if (!f.Metadata.TryGetValue("format", out var fmt) || fmt != CacheFormat) continue;
                var t = f["pixels"];
                if (t.dtype != ScalarType.Byte || t.shape.Length != 4 || t.shape[0] != count) continue;
                return (t.bytes.ToArray(), (int)t.shape[1], (int)t.shape[2], (int)t.shape[3]);
            }
            catch (InfluenceSharpException)
            {
                // A damaged cache file is rebuilt.
            }
        }
        return null;
    }

    static (byte[] Pixels, int C, int H, int W) Decode(string dir, string key, List<Entry> entries, (int H, int W)? size, int? channels,
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
        int c = channels.Value, one = c * h * w;
        var pixels = new byte[(long)entries.Count * one];
        using (var bar = ProgressReporter.Start(progress, "decoding images", entries.Count, "img"))
        {
            int done = 0;
            var errors = new InfluenceSharpException?[entries.Count];
            Parallel.For(0, entries.Count, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, Environment.ProcessorCount) }, (i, state) =>
            {
                try
                {
                    var img = ImageFile.Load(entries[i].Path, c).Resize(h, w);
                    Buffer.BlockCopy(img.Pixels, 0, pixels, i * one, one);
                }
                catch (InfluenceSharpException e) { errors[i] = e; state.Break(); return; }
                int d = Interlocked.Increment(ref done);
                if (bar is not null && (d & 63) == 0) lock (bar) bar.Update(d);
            });
            // The first bad file in listing order, whatever order the threads met them in.
            if (errors.FirstOrDefault(e => e is not null) is { } first)
                throw new InfluenceSharpException($"{first.Message} (in image folder {dir})", first);
            bar?.Complete();
        }
        WriteCache(dir, key, ResolvedKey(entries, c, h, w), pixels, entries.Count, c, h, w);
        return (pixels, c, h, w);
    }

    static void WriteCache(string dir, string key, string resolvedKey, byte[] pixels, int n, int c, int h, int w)
    {
        foreach (var cd in CacheDirs(dir))
        {
            try
            {
                Directory.CreateDirectory(cd);
                using var t = TorchSharp.torch.tensor(pixels, new long[] { n, c, h, w });
                // Atomic (temp file + rename): a concurrent reader sees the old state or the whole file.
                SafeTensors.Save(CacheFile(cd, resolvedKey), new Dictionary<string, Tensor> { ["pixels"] = t },
                    new Dictionary<string, string> { ["format"] = CacheFormat, ["images"] = n.ToString(CultureInfo.InvariantCulture) });
                if (key != resolvedKey) AtomicFile.WriteAllText(Path.Combine(cd, $"imagefolder-{key}.ref"), resolvedKey);
                return;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InfluenceSharpException)
            {
                // Not writable here: try the next place; no cache at all only costs time.
            }
        }
    }
}
