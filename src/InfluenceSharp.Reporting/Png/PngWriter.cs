using System.Buffers.Binary;
using System.IO.Compression;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Reporting;

/// <summary>Encodes 8-bit images as PNG: interleaved, row-major pixels with 1 (gray), 2 (gray +
/// alpha), 3 (RGB) or 4 (RGBA) channels.</summary>
public static class PngWriter
{
    private static ReadOnlySpan<byte> Signature => [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Example <paramref name="index"/> of a data set as it is shown (display pixels,
    /// channels interleaved for colour), as a PNG; null for tabular data.</summary>
    public static byte[]? EncodeExample(Data.LabeledDataset data, int index)
    {
        if (data.IsFlat) return null;
        var px = data.DisplayPixels(index);
        int c = data.DisplayChannels, h = data.Height, w = data.Width;
        if (c == 3)
        {
            var inter = new byte[px.Length];
            for (int y = 0; y < h; y++)
                for (int x = 0; x < w; x++)
                    for (int ch = 0; ch < 3; ch++) inter[(y * w + x) * 3 + ch] = px[(ch * h + y) * w + x];
            px = inter;
        }
        return Encode(px, w, h, c);
    }

    public static byte[] Encode(ReadOnlySpan<byte> pixels, int width, int height, int channels)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"PNG size must be positive, got {width}x{height}");
        byte colorType = channels switch
        {
            1 => 0, 2 => 4, 3 => 2, 4 => 6,
            _ => throw new ArgumentException($"PNG needs 1-4 channels, got {channels}"),
        };
        long stride = (long)width * channels;
        if (pixels.Length != stride * height)
            throw new ArgumentException($"{pixels.Length} bytes do not hold a {width}x{height} image of {channels} channels");

        using var png = new MemoryStream();
        png.Write(Signature);

        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr[4..], height);
        ihdr[8] = 8;          // bit depth
        ihdr[9] = colorType;
        ihdr[10] = 0;         // deflate
        ihdr[11] = 0;         // adaptive filtering
        ihdr[12] = 0;         // no interlace
        WriteChunk(png, "IHDR", ihdr);

        WriteChunk(png, "IDAT", Compress(pixels, (int)stride, height, channels));
        WriteChunk(png, "IEND", ReadOnlySpan<byte>.Empty);
        return png.ToArray();
    }

    public static void Save(string path, ReadOnlySpan<byte> pixels, int width, int height, int channels) =>
        AtomicFile.WriteAllBytes(path, Encode(pixels, width, height, channels));

    private static byte[] Compress(ReadOnlySpan<byte> pixels, int stride, int height, int bpp)
    {
        using var ms = new MemoryStream();
        using (var z = new ZLibStream(ms, CompressionLevel.Optimal, leaveOpen: true))
        {
            var prev = new byte[stride];   // the row above the first one is all zeros
            var best = new byte[stride + 1];
            var trial = new byte[stride + 1];
            for (int y = 0; y < height; y++)
            {
                var row = pixels.Slice(y * stride, stride);
                long bestCost = long.MaxValue;
                // Per-row filter choice by the minimum sum of absolute differences heuristic
                // (PNG spec, 12.8): plots are flat areas and lines, which Sub/Up compress well.
                for (byte f = 0; f <= 4; f++)
                {
                    long cost = Filter(f, row, prev, bpp, trial);
                    if (cost < bestCost) { bestCost = cost; (best, trial) = (trial, best); }
                }
                z.Write(best);
                row.CopyTo(prev);
            }
        }
        return ms.ToArray();
    }

    private static long Filter(byte type, ReadOnlySpan<byte> row, ReadOnlySpan<byte> prev, int bpp, Span<byte> dst)
    {
        dst[0] = type;
        long cost = 0;
        for (int i = 0; i < row.Length; i++)
        {
            int a = i >= bpp ? row[i - bpp] : 0, b = prev[i], c = i >= bpp ? prev[i - bpp] : 0;
            int predictor = type switch
            {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) >> 1,
                _ => Paeth(a, b, c),
            };
            byte v = (byte)(row[i] - predictor);
            dst[i + 1] = v;
            cost += v < 128 ? v : 256 - v;
        }
        return cost;
    }

    internal static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    private static void WriteChunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> head = stackalloc byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        for (int i = 0; i < 4; i++) head[4 + i] = (byte)type[i];
        s.Write(head);
        s.Write(data);
        uint crc = Crc32.Append(Crc32.Compute(head[4..]), data);   // CRC covers type and data, not length
        Span<byte> tail = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(tail, crc);
        s.Write(tail);
    }
}
