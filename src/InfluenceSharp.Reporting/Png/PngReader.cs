using System.Buffers.Binary;
using System.IO.Compression;

namespace InfluenceSharp.Reporting;

/// <summary>An 8-bit PNG image decoded to interleaved pixels (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA).</summary>
public sealed record PngImage(int Width, int Height, int Channels, byte[] Pixels)
{
    /// <summary>Channel-major pixels [C, H, W] with C = 1 (luminance) or 3 (RGB); alpha is dropped.</summary>
    public byte[] ChannelMajor(int channels)
    {
        var result = new byte[channels * Height * Width];
        for (int y = 0; y < Height; y++)
            for (int x = 0; x < Width; x++)
            {
                int i = (y * Width + x) * Channels;
                byte r = Pixels[i], g = Channels >= 3 ? Pixels[i + 1] : r, b = Channels >= 3 ? Pixels[i + 2] : r;
                if (channels == 1) result[y * Width + x] = (byte)Math.Round(0.299 * r + 0.587 * g + 0.114 * b);
                else
                {
                    result[y * Width + x] = r;
                    result[Height * Width + y * Width + x] = g;
                    result[2 * Height * Width + y * Width + x] = b;
                }
            }
        return result;
    }
}

/// <summary>Reads 8-bit, non-interlaced PNG files (gray, gray+alpha, RGB, RGBA), so a query can be
/// given as an image file. Errors name the file.</summary>
public static class PngReader
{
    public static PngImage Read(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        var png = File.ReadAllBytes(path);
        try { return Decode(png, path); }
        catch (Exception e) when (e is InvalidDataException or ArgumentOutOfRangeException or IndexOutOfRangeException)
        {
            throw new InfluenceSharpException($"{path}: corrupt PNG ({e.Message})", e);
        }
    }

    static PngImage Decode(byte[] png, string path)
    {
        ReadOnlySpan<byte> sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (png.Length < 8 || !png.AsSpan(0, 8).SequenceEqual(sig)) throw new InfluenceSharpException($"{path}: not a PNG file");
        int pos = 8, width = 0, height = 0, channels = 0;
        using var idat = new MemoryStream();
        while (pos + 12 <= png.Length)
        {
            int len = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            if (len < 0 || pos + 12 + len > png.Length) throw new InfluenceSharpException($"{path}: truncated PNG chunk");
            string type = System.Text.Encoding.ASCII.GetString(png, pos + 4, 4);
            var body = png.AsSpan(pos + 8, len);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(body);
                height = BinaryPrimitives.ReadInt32BigEndian(body[4..]);
                if (body[8] != 8 || body[12] != 0)
                    throw new InfluenceSharpException($"{path}: only 8-bit, non-interlaced PNG is supported");
                channels = body[9] switch
                {
                    0 => 1, 4 => 2, 2 => 3, 6 => 4,
                    var t => throw new InfluenceSharpException($"{path}: PNG colour type {t} (palette?) is not supported; save as gray or RGB"),
                };
            }
            else if (type == "IDAT") idat.Write(body);
            else if (type == "IEND") break;
            pos += 12 + len;
        }
        if (channels == 0 || width <= 0 || height <= 0) throw new InfluenceSharpException($"{path}: PNG has no valid IHDR");
        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        using var raw = new MemoryStream();
        z.CopyTo(raw);
        var data = raw.ToArray();
        var px = Unfilter(data, width, height, channels, path);
        return new PngImage(width, height, channels, px);
    }

    /// <summary>Undoes PNG's per-row filters (None, Sub, Up, Average, Paeth) of decompressed image data.</summary>
    internal static byte[] Unfilter(byte[] data, int width, int height, int channels, string source)
    {
        int stride = width * channels;
        if (data.Length != (stride + 1) * height) throw new InfluenceSharpException($"{source}: PNG image data has the wrong size (truncated?)");
        var px = new byte[stride * height];
        for (int y = 0; y < height; y++)
        {
            byte filter = data[y * (stride + 1)];
            for (int i = 0; i < stride; i++)
            {
                int v = data[y * (stride + 1) + 1 + i];
                int a = i >= channels ? px[y * stride + i - channels] : 0;
                int b = y > 0 ? px[(y - 1) * stride + i] : 0;
                int c = i >= channels && y > 0 ? px[(y - 1) * stride + i - channels] : 0;
                int pred = filter switch
                {
                    0 => 0, 1 => a, 2 => b, 3 => (a + b) / 2, 4 => Paeth(a, b, c),
                    _ => throw new InfluenceSharpException($"{source}: bad PNG filter type {filter} in row {y}"),
                };
                px[y * stride + i] = (byte)(v + pred);
            }
        }
        return px;
    }

    static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
