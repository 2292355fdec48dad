using System.IO.Compression;

namespace InfluenceSharp.Data;

/// <summary>An unsigned-byte IDX array (the MNIST / Fashion-MNIST file format).</summary>
public sealed record IdxArray(int[] Dims, byte[] Data)
{
    public int Count => Dims[0];
}

/// <summary>Reads IDX files (raw or gzip), checking the magic number, dimensions and size.</summary>
public static class IdxReader
{
    public static IdxArray Read(string path, int expectedRank)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        return Parse(File.ReadAllBytes(path), path, expectedRank);
    }

    /// <summary>Parses IDX bytes (raw or gzip); <paramref name="path"/> names the source in errors.</summary>
    public static IdxArray Parse(byte[] raw, string path, int expectedRank)
    {
        byte[] bytes;
        try { bytes = Gunzip(raw); }
        catch (InvalidDataException e) { throw new InfluenceSharpException($"{path}: corrupt gzip stream: {e.Message}", e); }
        var dims = Header(bytes, bytes.Length, path, expectedRank);
        return new IdxArray(dims, bytes.AsSpan(4 + 4 * dims.Length).ToArray());
    }

    /// <summary>Checks an IDX header (<paramref name="head"/>: at least the file's first 4 + 4 · rank
    /// bytes, or all of it when shorter) against the file's length; returns the dimensions.</summary>
    static int[] Header(ReadOnlySpan<byte> head, long fileLength, string path, int expectedRank)
    {
        if (fileLength < 4) throw new InfluenceSharpException($"{path}: not an IDX file (only {fileLength} bytes)");
        if (head[0] != 0 || head[1] != 0)
            throw new InfluenceSharpException($"{path}: not an IDX file (magic starts with {head[0]:x2}{head[1]:x2}, expected 0000)");
        if (head[2] != 0x08)
            throw new InfluenceSharpException($"{path}: IDX element type 0x{head[2]:x2} is not unsigned byte (0x08)");
        int rank = head[3];
        if (rank != expectedRank)
            throw new InfluenceSharpException($"{path}: IDX rank is {rank}, expected {expectedRank} ({(expectedRank == 1 ? "labels" : "images")})");
        if (fileLength < 4 + 4 * rank || head.Length < 4 + 4 * rank) throw new InfluenceSharpException($"{path}: truncated IDX header");
        var dims = new int[rank];
        long total = 1;
        for (int i = 0; i < rank; i++)
        {
            int o = 4 + 4 * i;
            dims[i] = (head[o] << 24) | (head[o + 1] << 16) | (head[o + 2] << 8) | head[o + 3];
            if (dims[i] <= 0) throw new InfluenceSharpException($"{path}: IDX dimension {i} is {dims[i]}");
            total *= dims[i];
        }
        long have = fileLength - (4 + 4 * rank);
        if (have != total)
            throw new InfluenceSharpException($"{path}: IDX header says {string.Join("x", dims)} = {total} bytes of data but the file holds {have} ({(have < total ? "truncated" : "trailing bytes")})");
        return dims;
    }

    /// <summary>An images file [N, H, W] read image by image from disk: a raw file as it is; a gzip
    /// file is decompressed once into a cache file (beside it, or in the user's local application
    /// data; keyed on the compressed file's SHA-256) that is then read. Only when no
    /// cache can be written is the whole array read into memory.</summary>
    public static (PixelStore Store, int Height, int Width) MapImages(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        string raw = path;
        if (IsGzip(path))
        {
            if (DecompressedCache(path) is { } cached) raw = cached;
            else
            {
                var a = Read(path, 3);
                return (new ArrayPixelStore(a.Data, a.Dims[1] * a.Dims[2]), a.Dims[1], a.Dims[2]);
            }
        }
        var head = new byte[16];
        long length;
        using (var f = File.OpenRead(raw))
        {
            length = f.Length;
            f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        var dims = Header(head.AsSpan(0, (int)Math.Min(16, length)), length, path, 3);
        return (new FilePixelStore(raw, 16, (long)dims[1] * dims[2], dims[1] * dims[2], dims[0]), dims[1], dims[2]);
    }

    static bool IsGzip(string path)
    {
        using var f = File.OpenRead(path);
        return f.ReadByte() == 0x1f && f.ReadByte() == 0x8b;
    }

    const string CacheFormat = "idx-u8-1";

    /// <summary>The decompressed copy of a gzip file in a cache directory, made when missing; null
    /// when no cache directory is writable.</summary>
    static string? DecompressedCache(string gzPath)
    {
        string key;
        using (var f = File.OpenRead(gzPath)) key = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(f))[..24];
        string name = $"{CacheFormat}-{key}.idx";
        var dirs = ImageFolderReader.CacheDirs(Path.GetDirectoryName(Path.GetFullPath(gzPath))!).ToList();
        foreach (var d in dirs)
            if (File.Exists(Path.Combine(d, name))) return Path.Combine(d, name);
        foreach (var d in dirs)
        {
            try
            {
                Directory.CreateDirectory(d);
                string target = Path.Combine(d, name);
                AtomicFile.Write(target, s =>
                {
                    try
                    {
                        using var gz = new GZipStream(File.OpenRead(gzPath), CompressionMode.Decompress);
                        gz.CopyTo(s, 1 << 20);
                    }
                    catch (InvalidDataException e) { throw new InfluenceSharpException($"{gzPath}: corrupt gzip stream: {e.Message}", e); }
                });
                return target;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Not writable here: try the next place.
            }
        }
        return null;
    }

    static byte[] Gunzip(byte[] raw)
    {
        if (raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
        {
            using var gz = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var ms = new MemoryStream();
            gz.CopyTo(ms);
            return ms.ToArray();
        }
        return raw;
    }

    /// <summary>Reads an images file and its labels file into a dataset, checking that counts agree
    /// and labels lie in [0, numClasses).</summary>
    /// <summary>Reads an images file and its labels file into a dataset, checking that counts agree
    /// and labels lie in [0, numClasses). The images are read from disk image by image (see
    /// <see cref="MapImages"/>).</summary>
    public static ImageDataset ReadImagesAndLabels(string imagesPath, string labelsPath, string name, int numClasses = 10)
    {
        var (store, h, w) = MapImages(imagesPath);
        var labels = Read(labelsPath, 1);
        if (store.Count != labels.Count)
            throw new InfluenceSharpException($"{imagesPath} has {store.Count} images but {labelsPath} has {labels.Count} labels");
        return new ImageDataset(name, store, null, Labels(labels, labelsPath, numClasses), 1, h, w, numClasses);
    }

    static int[] Labels(IdxArray labels, string labelsPath, int numClasses)
    {
        var y = new int[labels.Count];
        for (int i = 0; i < y.Length; i++)
        {
            y[i] = labels.Data[i];
            if (y[i] >= numClasses)
                throw new InfluenceSharpException($"{labelsPath}: label {y[i]} at index {i} is out of range [0, {numClasses})");
        }
        return y;
    }

    public static ImageDataset ToDataset(IdxArray images, string imagesPath, IdxArray labels, string labelsPath, string name, int numClasses = 10)
    {
        if (images.Count != labels.Count)
            throw new InfluenceSharpException($"{imagesPath} has {images.Count} images but {labelsPath} has {labels.Count} labels");
        var y = new int[labels.Count];
        for (int i = 0; i < y.Length; i++)
        {
            y[i] = labels.Data[i];
            if (y[i] >= numClasses)
                throw new InfluenceSharpException($"{labelsPath}: label {y[i]} at index {i} is out of range [0, {numClasses})");
        }
        return new ImageDataset(name, images.Data, y, 1, images.Dims[1], images.Dims[2], numClasses);
    }

    /// <summary>Writes an unsigned-byte IDX file, gzip-compressed when the path ends in .gz.</summary>
    public static void Write(string path, int[] dims, ReadOnlySpan<byte> data)
    {
        var header = new byte[4 + 4 * dims.Length];
        header[2] = 0x08; header[3] = (byte)dims.Length;
        for (int i = 0; i < dims.Length; i++)
        {
            header[4 + 4 * i] = (byte)(dims[i] >> 24); header[5 + 4 * i] = (byte)(dims[i] >> 16);
            header[6 + 4 * i] = (byte)(dims[i] >> 8); header[7 + 4 * i] = (byte)dims[i];
        }
        byte[] payload = data.ToArray();
        AtomicFile.Write(path, s =>
        {
            if (path.EndsWith(".gz", StringComparison.Ordinal))
            {
                using var gz = new GZipStream(s, CompressionLevel.SmallestSize, leaveOpen: true);
                gz.Write(header); gz.Write(payload);
            }
            else { s.Write(header); s.Write(payload); }
        });
    }
}
