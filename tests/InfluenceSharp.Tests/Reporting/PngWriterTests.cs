using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Reporting;

public class PngWriterTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RandomImagesRoundTripExactly(int channels)
    {
        int seed = TestSeed.For();
        var rng = new Random(seed);
        foreach (var (w, h) in new[] { (1, 1), (rng.Next(2, 40), rng.Next(2, 40)), (97, 13) })
        {
            var px = new byte[w * h * channels];
            rng.NextBytes(px);
            // Some flat and gradient runs too, so that every filter type gets chosen somewhere.
            for (int i = 0; i < px.Length / 3; i++) px[i] = (byte)(i / channels);
            var img = PngTestDecoder.Decode(PngWriter.Encode(px, w, h, channels));
            Assert.True((w, h, channels) == (img.Width, img.Height, img.Channels), $"seed {seed}");
            Assert.True(px.AsSpan().SequenceEqual(img.Pixels), $"pixels differ, seed {seed}, {w}x{h}x{channels}");
            Assert.Equal(new[] { "IHDR", "IDAT", "IEND" }, img.ChunkTypes);
        }
    }

    [Fact]
    public void Crc32MatchesTheStandardCheckValue()
    {
        var check = "123456789"u8;
        Assert.Equal(0xCBF43926u, Crc32.Compute(check));
        Assert.Equal(0xCBF43926u, Crc32.Append(Crc32.Compute(check[..4]), check[4..]));
        var rnd = new byte[1000]; TestSeed.Random().NextBytes(rnd);
        Assert.Equal(PngTestDecoder.Crc(rnd), Crc32.Compute(rnd));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentException>(() => PngWriter.Encode(new byte[12], 2, 2, 2));
        Assert.Throws<ArgumentException>(() => PngWriter.Encode(new byte[10], 2, 1, 5));
        Assert.Throws<ArgumentException>(() => PngWriter.Encode([], 0, 0, 3));
    }

    [Fact]
    public void SaveWritesTheEncodedBytesAndNoTempFiles()
    {
        using var dir = new TempDir();
        var px = new byte[5 * 4 * 3]; TestSeed.Random().NextBytes(px);
        PngWriter.Save(dir.File("sub/a.png"), px, 5, 4, 3);
        Assert.Equal(PngWriter.Encode(px, 5, 4, 3), File.ReadAllBytes(dir.File("sub/a.png")));
        Assert.Single(Directory.GetFiles(dir.File("sub")));
    }
}
