using System.Buffers.Binary;
using System.IO.Compression;
using InfluenceSharp.Data;
using InfluenceSharp.Tests.Reporting;
using Xunit.Abstractions;
using StbWriter = StbImageWriteSharp;

namespace InfluenceSharp.Tests.Data;

/// <summary>ImageFile decodes the images a user has. Source pixels are random (fixed seeds, printed)
/// and the decoded bytes are compared with them: exactly for lossless formats, within a tolerance for
/// JPEG. PNG variants the library's own writer never produces (low and 16-bit depths, palette,
/// Adam7 interlacing) are encoded here by hand.</summary>
public class ImageFileTests
{
    const int Seed = 20261130;
    private readonly ITestOutputHelper output;
    public ImageFileTests(ITestOutputHelper output) { this.output = output; }

    /// <summary>Interleaved samples [H, W, C] of the given bit depth, from a seeded generator.</summary>
    int[] RandomSamples(int w, int h, int c, int maxValue, int seed)
    {
        output.WriteLine($"seed {seed}: {w}x{h}x{c} samples in 0..{maxValue}");
        var rng = new Random(seed);
        return Enumerable.Range(0, w * h * c).Select(_ => rng.Next(maxValue + 1)).ToArray();
    }

    /// <summary>A PNG with any bit depth / colour type, filter None, optionally Adam7-interlaced.</summary>
    static byte[] EncodePng(int[] samples, int w, int h, int colorType, int bitDepth, bool interlace, byte[]? palette = null)
    {
        int c = colorType switch { 0 => 1, 2 => 3, 3 => 1, 4 => 2, 6 => 4, _ => throw new ArgumentException("colour type") };
        using var raw = new MemoryStream();
        void Pass(int x0, int y0, int dx, int dy)
        {
            int pw = (w - x0 + dx - 1) / dx, ph = (h - y0 + dy - 1) / dy;
            if (pw <= 0 || ph <= 0) return;
            for (int py = 0; py < ph; py++)
            {
                raw.WriteByte(0);   // filter: None
                var bits = new List<int>();
                for (int px = 0; px < pw; px++)
                    for (int k = 0; k < c; k++)
                        bits.Add(samples[((y0 + py * dy) * w + x0 + px * dx) * c + k]);
                if (bitDepth == 16) foreach (var v in bits) { raw.WriteByte((byte)(v >> 8)); raw.WriteByte((byte)v); }
                else if (bitDepth == 8) foreach (var v in bits) raw.WriteByte((byte)v);
                else
                {
                    int perByte = 8 / bitDepth;
                    for (int i = 0; i < bits.Count; i += perByte)
                    {
                        int b = 0;
                        for (int j = 0; j < perByte; j++)
                            b |= (i + j < bits.Count ? bits[i + j] : 0) << (8 - bitDepth * (j + 1));
                        raw.WriteByte((byte)b);
                    }
                }
            }
        }
        if (interlace)
            foreach (var (x0, y0, dx, dy) in new[] { (0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2) })
                Pass(x0, y0, dx, dy);
        else Pass(0, 0, 1, 1);

        using var z = new MemoryStream();
        using (var zs = new ZLibStream(z, CompressionLevel.Optimal, leaveOpen: true)) zs.Write(raw.ToArray());
        using var png = new MemoryStream();
        png.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        void Chunk(string type, byte[] body)
        {
            Span<byte> len = stackalloc byte[4];
            BinaryPrimitives.WriteInt32BigEndian(len, body.Length);
            png.Write(len);
            var typed = System.Text.Encoding.ASCII.GetBytes(type).Concat(body).ToArray();
            png.Write(typed);
            Span<byte> crc = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(crc, PngTestDecoder.Crc(typed));
            png.Write(crc);
        }
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = (byte)bitDepth; ihdr[9] = (byte)colorType; ihdr[12] = (byte)(interlace ? 1 : 0);
        Chunk("IHDR", ihdr);
        if (palette is not null) Chunk("PLTE", palette);
        Chunk("IDAT", z.ToArray());
        Chunk("IEND", []);
        return png.ToArray();
    }

    /// <summary>What ImageFile should return for interleaved 8-bit samples with c channels (gray,
    /// gray+alpha, RGB or RGBA): channel-major gray (luminance) or RGB, alpha dropped.</summary>
    static byte[] Expected(byte[] hwc, int w, int h, int c, int channels)
    {
        int plane = w * h;
        var result = new byte[channels * plane];
        for (int i = 0; i < plane; i++)
        {
            byte r = hwc[i * c], g = c >= 3 ? hwc[i * c + 1] : r, b = c >= 3 ? hwc[i * c + 2] : r;
            if (channels == 1) result[i] = ImageFile.Luminance(r, g, b);
            else { result[i] = r; result[plane + i] = g; result[2 * plane + i] = b; }
        }
        return result;
    }

    static ImageFile LoadVia(TempDir dir, string name, byte[] encoded, int channels)
    {
        File.WriteAllBytes(dir.File(name), encoded);
        return ImageFile.Load(dir.File(name), channels);
    }

    [Theory]
    // colour type, bit depth, interlaced
    [InlineData(0, 8, false)]
    [InlineData(0, 8, true)]
    [InlineData(0, 1, false)]
    [InlineData(0, 2, true)]
    [InlineData(0, 4, false)]
    [InlineData(0, 16, false)]
    [InlineData(0, 16, true)]
    [InlineData(2, 8, false)]
    [InlineData(2, 8, true)]
    [InlineData(2, 16, false)]
    [InlineData(4, 8, false)]
    [InlineData(4, 16, true)]
    [InlineData(6, 8, false)]
    [InlineData(6, 8, true)]
    [InlineData(6, 16, false)]
    public void DecodesPngOfEveryColourTypeDepthAndInterlace(int colorType, int bitDepth, bool interlace)
    {
        using var dir = new TempDir();
        int w = 13, h = 11;   // not multiples of 8: partial Adam7 passes and padded low-depth rows
        int c = colorType switch { 0 => 1, 2 => 3, 4 => 2, _ => 4 };
        int max = (1 << bitDepth) - 1;
        var samples = RandomSamples(w, h, c, max, Seed + 100 * colorType + bitDepth + (interlace ? 1 : 0));
        var png = EncodePng(samples, w, h, colorType, bitDepth, interlace);
        // 8-bit values as a decoder must produce them: low depths scaled to 0..255, 16-bit's high byte.
        var eight = samples.Select(v => (byte)(bitDepth == 16 ? v >> 8 : v * (255 / max))).ToArray();
        foreach (int channels in new[] { 1, 3 })
        {
            var image = LoadVia(dir, $"x{channels}.png", png, channels);
            Assert.Equal((w, h, channels), (image.Width, image.Height, image.Channels));
            Assert.Equal(Expected(eight, w, h, c, channels), image.Pixels);
        }
    }

    [Theory]
    [InlineData(8, false)]
    [InlineData(4, true)]
    [InlineData(1, false)]
    public void DecodesPalettePng(int bitDepth, bool interlace)
    {
        using var dir = new TempDir();
        int w = 9, h = 7, entries = 1 << bitDepth;
        var rng = new Random(Seed + bitDepth);
        output.WriteLine($"seed {Seed + bitDepth}: palette");
        var palette = new byte[3 * entries]; rng.NextBytes(palette);
        var indices = RandomSamples(w, h, 1, entries - 1, Seed + 7 * bitDepth);
        var png = EncodePng(indices, w, h, 3, bitDepth, interlace, palette);
        var rgb = indices.SelectMany(i => new[] { palette[3 * i], palette[3 * i + 1], palette[3 * i + 2] }).ToArray();
        Assert.Equal(Expected(rgb, w, h, 3, 3), LoadVia(dir, "p.png", png, 3).Pixels);
        Assert.Equal(Expected(rgb, w, h, 3, 1), LoadVia(dir, "p.png", png, 1).Pixels);
    }

    [Fact]
    public void DecodesThePngsTheReportingWriterProduces()
    {
        using var dir = new TempDir();
        var hwc = RandomSamples(28, 28, 3, 255, Seed + 1).Select(v => (byte)v).ToArray();
        var png = InfluenceSharp.Reporting.PngWriter.Encode(hwc, 28, 28, 3);
        var image = LoadVia(dir, "w.png", png, 3);
        Assert.Equal(Expected(hwc, 28, 28, 3, 3), image.Pixels);
        // The channel-major indexer: channel, row, column.
        Assert.Equal(hwc[(5 * 28 + 7) * 3 + 2], image[2, 5, 7]);
    }

    [Theory]
    [InlineData("bmp", 3)]
    [InlineData("bmp", 4)]
    [InlineData("tga", 1)]
    [InlineData("tga", 3)]
    [InlineData("png", 2)]
    public void DecodesLosslessFormatsWrittenByStbExactly(string format, int c)
    {
        using var dir = new TempDir();
        int w = 17, h = 10;
        var hwc = RandomSamples(w, h, c, 255, Seed + 3 + c).Select(v => (byte)v).ToArray();
        using var ms = new MemoryStream();
        var writer = new StbWriter.ImageWriter();
        var comp = (StbWriter.ColorComponents)c;
        switch (format)
        {
            case "bmp": writer.WriteBmp(hwc, w, h, comp, ms); break;
            case "tga": writer.WriteTga(hwc, w, h, comp, ms); break;
            default: writer.WritePng(hwc, w, h, comp, ms); break;
        }
        // BMP keeps no alpha when written with 4 components? It does (32-bit); either way RGB is exact.
        foreach (int channels in new[] { 1, 3 })
            Assert.Equal(Expected(hwc, w, h, c, channels), LoadVia(dir, $"i{channels}.{format}", ms.ToArray(), channels).Pixels);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void DecodesJpegWithinTolerance(int c)
    {
        using var dir = new TempDir();
        int w = 32, h = 24;
        // A smooth gradient with a little seeded noise: what photographs look like to JPEG.
        var noise = RandomSamples(w, h, c, 8, Seed + 11 * c);
        var hwc = new byte[w * h * c];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int k = 0; k < c; k++)
                    hwc[(y * w + x) * c + k] = (byte)Math.Clamp(40 + 5 * x + 3 * y + 30 * k + noise[(y * w + x) * c + k], 0, 255);
        using var ms = new MemoryStream();
        new StbWriter.ImageWriter().WriteJpg(hwc, w, h, (StbWriter.ColorComponents)c, ms, 95);
        var jpg = ms.ToArray();
        Assert.Equal(0xFF, jpg[0]); Assert.Equal(0xD8, jpg[1]);
        foreach (int channels in new[] { 1, 3 })
        {
            var image = LoadVia(dir, $"q{channels}.jpg", jpg, channels);
            Assert.Equal((w, h, channels), (image.Width, image.Height, image.Channels));
            var want = Expected(hwc, w, h, c, channels);
            var diff = want.Zip(image.Pixels, (a, b) => Math.Abs(a - b)).ToArray();
            output.WriteLine($"JPEG {c}->{channels} channels: mean |error| {diff.Average():F2}, max {diff.Max()}");
            Assert.True(diff.Average() < 3 && diff.Max() <= 24, $"mean {diff.Average():F2}, max {diff.Max()}");
        }
    }

    [Fact]
    public void ErrorsNameTheFile()
    {
        using var dir = new TempDir();
        string missing = dir.File("missing.png");
        Assert.StartsWith(missing + ": file not found", Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(missing, 1)).Message);
        Assert.StartsWith(dir.Path + ": is a directory", Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(dir.Path, 1)).Message);

        File.WriteAllBytes(dir.File("empty.png"), []);
        Assert.StartsWith(dir.File("empty.png") + ": empty file", Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(dir.File("empty.png"), 1)).Message);

        File.WriteAllText(dir.File("notes.png"), "these are not the pixels you are looking for");
        var e = Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(dir.File("notes.png"), 1));
        Assert.StartsWith(dir.File("notes.png") + ":", e.Message);

        var png = EncodePng(RandomSamples(8, 8, 3, 255, Seed + 5), 8, 8, 2, 8, false);
        File.WriteAllBytes(dir.File("cut.png"), png[..(png.Length / 2)]);
        e = Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(dir.File("cut.png"), 3));
        Assert.StartsWith(dir.File("cut.png") + ":", e.Message);

        // Over 256 MiB: refused from its size, before reading (a sparse file, no disk used).
        using (var big = new FileStream(dir.File("big.png"), FileMode.Create)) big.SetLength(ImageFile.MaxFileBytes + 1);
        e = Assert.Throws<InfluenceSharpException>(() => ImageFile.Load(dir.File("big.png"), 1));
        Assert.StartsWith(dir.File("big.png") + ": 268435457 bytes", e.Message);

        Assert.Throws<ArgumentOutOfRangeException>(() => ImageFile.Decode(png, 2));
    }

    [Fact]
    public void RefusesDevicesInsteadOfReadingForever()
    {
        if (!File.Exists("/dev/zero")) return;   // not a Unix system
        var e = Assert.Throws<InfluenceSharpException>(() => ImageFile.Load("/dev/zero", 1));
        Assert.StartsWith("/dev/zero: ", e.Message);
        output.WriteLine(e.Message);
    }
}
