using System.Buffers.Binary;
using System.IO.Compression;

namespace InfluenceSharp.Tests.Reporting;

/// <summary>A minimal, independent PNG reader for the tests: 8-bit, non-interlaced images of any
/// colour type but palette. It checks the signature, chunk order and every chunk's CRC.</summary>
public static class PngTestDecoder
{
    public sealed record Image(int Width, int Height, int Channels, byte[] Pixels, List<string> ChunkTypes)
    {
        public (byte R, byte G, byte B) Rgb(int x, int y)
        {
            int i = (y * Width + x) * Channels;
            return Channels >= 3 ? (Pixels[i], Pixels[i + 1], Pixels[i + 2]) : (Pixels[i], Pixels[i], Pixels[i]);
        }
    }

    /// <summary>Bitwise CRC-32 straight from the PNG specification's definition (no table), so it
    /// does not share a bug with the encoder's table-driven one.</summary>
    public static uint Crc(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFF;
    }

    public static Image Decode(byte[] png)
    {
        byte[] sig = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        Assert.Equal(sig, png[..8]);
        int pos = 8, width = 0, height = 0, colorType = -1;
        var types = new List<string>();
        using var idat = new MemoryStream();
        while (pos < png.Length)
        {
            int len = BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(pos));
            Assert.InRange(len, 0, png.Length - pos - 12);
            string type = System.Text.Encoding.ASCII.GetString(png, pos + 4, 4);
            var body = png.AsSpan(pos + 8, len);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + len));
            Assert.True(Crc(png.AsSpan(pos + 4, 4 + len)) == crc, $"bad CRC in chunk {type}");
            types.Add(type);
            if (type == "IHDR")
            {
                Assert.Equal(13, len);
                width = BinaryPrimitives.ReadInt32BigEndian(body);
                height = BinaryPrimitives.ReadInt32BigEndian(body[4..]);
                Assert.Equal(8, body[8]);
                colorType = body[9];
                Assert.Equal(0, body[10]); Assert.Equal(0, body[11]); Assert.Equal(0, body[12]);
            }
            else if (type == "IDAT") idat.Write(body);
            pos += 12 + len;
        }
        Assert.Equal(png.Length, pos);
        Assert.Equal("IHDR", types[0]);
        Assert.Equal("IEND", types[^1]);
        int channels = colorType switch { 0 => 1, 4 => 2, 2 => 3, 6 => 4, _ => throw new Xunit.Sdk.XunitException($"colour type {colorType}") };

        idat.Position = 0;
        using var z = new ZLibStream(idat, CompressionMode.Decompress);
        using var raw = new MemoryStream();
        z.CopyTo(raw);
        var data = raw.ToArray();
        var px = Unfilter(data, width, height, channels, "test");
        return new Image(width, height, channels, px, types);
    }

    /// <summary>Undoes PNG's per-row filters (None, Sub, Up, Average, Paeth) of decompressed image data.</summary>
    public static byte[] Unfilter(byte[] data, int width, int height, int channels, string source)
    {
        int stride = width * channels;
        if (data.Length != (stride + 1) * height) throw new Xunit.Sdk.XunitException($"{source}: PNG image data has the wrong size (truncated?)");
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
                    _ => throw new Xunit.Sdk.XunitException($"{source}: bad PNG filter type {filter} in row {y}"),
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
