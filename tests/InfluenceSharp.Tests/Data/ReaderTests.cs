using System.IO.Compression;
using InfluenceSharp.Data;

namespace InfluenceSharp.Tests.Data;

public class IdxReaderTests
{
    static (byte[] Images, byte[] Labels) RandomSet(int n, int h, int w, Random rng)
    {
        var px = new byte[n * h * w]; rng.NextBytes(px);
        var lb = new byte[n]; for (int i = 0; i < n; i++) lb[i] = (byte)rng.Next(10);
        return (px, lb);
    }

    [Theory]
    [InlineData(".gz")]
    [InlineData("")]
    public void ReadsWellFormedFilesRawOrGzip(string ext)
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        var (px, lb) = RandomSet(7, 5, 4, rng);
        IdxReader.Write(dir.File("img" + ext), new[] { 7, 5, 4 }, px);
        IdxReader.Write(dir.File("lab" + ext), new[] { 7 }, lb);
        var d = IdxReader.ReadImagesAndLabels(dir.File("img" + ext), dir.File("lab" + ext), "t");
        Assert.Equal(7, d.Count);
        Assert.Equal((5, 4, 1), (d.Height, d.Width, d.Channels));
        Assert.Equal(px, d.Pixels);
        Assert.Equal(lb.Select(b => (int)b), d.Labels);
        if (ext == ".gz") Assert.Equal(0x1f, File.ReadAllBytes(dir.File("img.gz"))[0]);
    }

    [Fact]
    public void RejectsBadMagicTruncationAndLabelRange()
    {
        using var dir = new TempDir();
        var (px, lb) = RandomSet(6, 3, 3, new Random(1234));
        IdxReader.Write(dir.File("img"), new[] { 6, 3, 3 }, px);
        IdxReader.Write(dir.File("lab"), new[] { 6 }, lb);

        var truncated = File.ReadAllBytes(dir.File("img"))[..^5];
        File.WriteAllBytes(dir.File("img-trunc"), truncated);
        var e = Assert.Throws<InfluenceSharpException>(() => IdxReader.Read(dir.File("img-trunc"), 3));
        Assert.Contains("img-trunc", e.Message); Assert.Contains("truncated", e.Message);

        var bad = File.ReadAllBytes(dir.File("img")); bad[0] = 0x12;
        File.WriteAllBytes(dir.File("img-magic"), bad);
        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.Read(dir.File("img-magic"), 3));
        Assert.Contains("img-magic", e.Message); Assert.Contains("magic", e.Message);

        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.Read(dir.File("lab"), 3));
        Assert.Contains("rank", e.Message);

        var badLabels = (byte[])lb.Clone(); badLabels[4] = 11;
        IdxReader.Write(dir.File("lab-range"), new[] { 6 }, badLabels);
        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.ReadImagesAndLabels(dir.File("img"), dir.File("lab-range"), "t"));
        Assert.Contains("lab-range", e.Message); Assert.Contains("index 4", e.Message);

        IdxReader.Write(dir.File("lab-count"), new[] { 5 }, lb[..5]);
        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.ReadImagesAndLabels(dir.File("img"), dir.File("lab-count"), "t"));
        Assert.Contains("5 labels", e.Message);

        var gz = new MemoryStream();
        using (var z = new GZipStream(gz, CompressionLevel.Fastest, true)) z.Write(File.ReadAllBytes(dir.File("img")));
        File.WriteAllBytes(dir.File("img-badgz.gz"), gz.ToArray()[..30]);
        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.Read(dir.File("img-badgz.gz"), 3));
        Assert.Contains("img-badgz.gz", e.Message);

        e = Assert.Throws<InfluenceSharpException>(() => IdxReader.Read(dir.File("nope"), 3));
        Assert.Contains("not found", e.Message);
    }

    [Fact]
    public void EmbeddedSubsetIsBalancedFashionMnist()
    {
        var s = Embedded.Split;
        Assert.Equal(10000, s.Train.Count);
        Assert.Equal(2000, s.Test.Count);
        Assert.All(Enumerable.Range(0, 10), c => Assert.Equal(1000, s.Train.Labels.Count(l => l == c)));
        Assert.Equal((1, 28, 28), (s.Train.Channels, s.Train.Height, s.Train.Width));
    }
}

public class Cifar10ReaderTests
{
    [Fact]
    public void ReadsBatchesTheTestWrote()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        ImageDataset Make(int n)
        {
            var px = new byte[n * 3072]; rng.NextBytes(px);
            return new ImageDataset("c", px, Enumerable.Range(0, n).Select(_ => rng.Next(10)).ToArray(), 3, 32, 32, 10);
        }
        var parts = Enumerable.Range(1, 5).Select(_ => Make(3)).ToList();
        for (int i = 0; i < 5; i++) Cifar10Reader.WriteBatch(dir.File($"data_batch_{i + 1}.bin"), parts[i]);
        var test = Make(4);
        Cifar10Reader.WriteBatch(dir.File("test_batch.bin"), test);
        var split = DataSource.Load(dir.Path);
        Assert.Equal(15, split.Train.Count);
        Assert.Equal(parts.SelectMany(p => p.Labels), split.Train.Labels);
        Assert.Equal(parts.SelectMany(p => p.Pixels), ((ImageDataset)split.Train).Pixels);
        Assert.Equal(test.Pixels, ((ImageDataset)split.Test).Pixels);
        Assert.Equal(3, split.Train.Channels);
    }

    [Fact]
    public void RejectsTruncatedFilesAndBadLabels()
    {
        using var dir = new TempDir();
        var b = new byte[Cifar10Reader.RecordSize * 2]; new Random(5).NextBytes(b);
        b[0] = 3; b[Cifar10Reader.RecordSize] = 9;
        File.WriteAllBytes(dir.File("ok.bin"), b);
        Assert.Equal(2, Cifar10Reader.ReadBatches(new[] { dir.File("ok.bin") }, "x").Count);
        File.WriteAllBytes(dir.File("short.bin"), b[..^100]);
        var e = Assert.Throws<InfluenceSharpException>(() => Cifar10Reader.ReadBatches(new[] { dir.File("short.bin") }, "x"));
        Assert.Contains("short.bin", e.Message); Assert.Contains("truncated", e.Message);
        b[Cifar10Reader.RecordSize] = 10;
        File.WriteAllBytes(dir.File("label.bin"), b);
        e = Assert.Throws<InfluenceSharpException>(() => Cifar10Reader.ReadBatches(new[] { dir.File("label.bin") }, "x"));
        Assert.Contains("label.bin", e.Message); Assert.Contains("record 1", e.Message);
    }
}

public class LabelCorruptionTests
{
    [Fact]
    public void DeterministicExactCountAndAlwaysADifferentClass()
    {
        var rng = TestSeed.Random();
        var labels = Enumerable.Range(0, 1003).Select(_ => rng.Next(10)).ToArray();
        var (a, ra) = LabelCorruption.Corrupt(labels, 10, 0.1, 42);
        var (b, rb) = LabelCorruption.Corrupt(labels, 10, 0.1, 42);
        var (c, _) = LabelCorruption.Corrupt(labels, 10, 0.1, 43);
        Assert.Equal(a, b);
        Assert.Equal(ra.Indices, rb.Indices);
        Assert.NotEqual(a, c);
        Assert.Equal(100, ra.Indices.Length);   // round(0.1 * 1003)
        Assert.Equal(100, Enumerable.Range(0, labels.Length).Count(i => a[i] != labels[i]));
        for (int t = 0; t < ra.Indices.Length; t++)
        {
            Assert.Equal(labels[ra.Indices[t]], ra.TrueLabels[t]);
            Assert.Equal(a[ra.Indices[t]], ra.CorruptedLabels[t]);
            Assert.NotEqual(ra.TrueLabels[t], ra.CorruptedLabels[t]);
        }
        Assert.Throws<InfluenceSharpException>(() => LabelCorruption.Corrupt(labels, 10, 1.5, 0));
    }
}
