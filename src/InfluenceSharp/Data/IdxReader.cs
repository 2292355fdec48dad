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
        if (bytes.Length < 4) throw new InfluenceSharpException($"{path}: not an IDX file (only {bytes.Length} bytes)");
        if (bytes[0] != 0 || bytes[1] != 0)
            throw new InfluenceSharpException($"{path}: not an IDX file (magic starts with {bytes[0]:x2}{bytes[1]:x2}, expected 0000)");
        if (bytes[2] != 0x08)
            throw new InfluenceSharpException($"{path}: IDX element type 0x{bytes[2]:x2} is not unsigned byte (0x08)");
        int rank = bytes[3];
        if (rank != expectedRank)
            throw new InfluenceSharpException($"{path}: IDX rank is {rank}, expected {expectedRank} ({(expectedRank == 1 ? "labels" : "images")})");
        if (bytes.Length < 4 + 4 * rank) throw new InfluenceSharpException($"{path}: truncated IDX header");
        var dims = new int[rank];
        long total = 1;
        for (int i = 0; i < rank; i++)
        {
            int o = 4 + 4 * i;
            dims[i] = (bytes[o] << 24) | (bytes[o + 1] << 16) | (bytes[o + 2] << 8) | bytes[o + 3];
            if (dims[i] <= 0) throw new InfluenceSharpException($"{path}: IDX dimension {i} is {dims[i]}");
            total *= dims[i];
        }
        long have = bytes.Length - (4 + 4 * rank);
        if (have != total)
            throw new InfluenceSharpException($"{path}: IDX header says {string.Join("x", dims)} = {total} bytes of data but the file holds {have} ({(have < total ? "truncated" : "trailing bytes")})");
        return new IdxArray(dims, bytes.AsSpan(4 + 4 * rank).ToArray());
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
    public static ImageDataset ReadImagesAndLabels(string imagesPath, string labelsPath, string name, int numClasses = 10) =>
        ToDataset(Read(imagesPath, 3), imagesPath, Read(labelsPath, 1), labelsPath, name, numClasses);

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
        Storage.AtomicFile.Write(path, s =>
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
