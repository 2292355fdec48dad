using InfluenceSharp.Data;
using StbWriter = StbImageWriteSharp;

namespace InfluenceSharp.Tests.Data;

/// <summary>imagefolder: with JPEG and BMP files (any case of extension) beside PNG: decoded exactly
/// (BMP) or within JPEG's tolerance, and corrupt or truncated files named in the error.</summary>
public class ImageFolderFormatsTests
{
    const int W = 6, H = 5;

    static byte[] Rgb(Random rng)
    {
        // A smooth ramp plus a little noise: lossless formats must round-trip it exactly, JPEG closely.
        var hwc = new byte[H * W * 3];
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int k = 0; k < 3; k++)
                    hwc[(y * W + x) * 3 + k] = (byte)Math.Clamp(60 + 20 * x + 15 * y + 25 * k + rng.Next(-4, 5), 0, 255);
        return hwc;
    }

    static byte[] Encode(string format, byte[] hwc)
    {
        using var ms = new MemoryStream();
        var wr = new StbWriter.ImageWriter();
        if (format == "bmp") wr.WriteBmp(hwc, W, H, StbWriter.ColorComponents.RedGreenBlue, ms);
        else wr.WriteJpg(hwc, W, H, StbWriter.ColorComponents.RedGreenBlue, ms, 95);
        return ms.ToArray();
    }

    static byte[] Chw(byte[] hwc)
    {
        var chw = new byte[hwc.Length];
        for (int i = 0; i < H * W; i++) for (int k = 0; k < 3; k++) chw[k * H * W + i] = hwc[i * 3 + k];
        return chw;
    }

    [Fact]
    public void BmpAndJpegFoldersDecodeAndBadFilesAreNamed()
    {
        var rng = TestSeed.Random();
        using var dir = new TempDir();
        string root = dir.File("photos");
        var images = new Dictionary<string, byte[]>();
        void Put(string rel, string format)
        {
            var hwc = Rgb(rng);
            string f = Path.Combine(root, rel);
            Directory.CreateDirectory(Path.GetDirectoryName(f)!);
            File.WriteAllBytes(f, Encode(format, hwc));
            images[rel] = hwc;
        }
        for (int i = 0; i < 3; i++) { Put($"train/bmp/{i:D3}.bmp", "bmp"); Put($"train/jpeg/{i:D3}.jpg", "jpg"); }
        Put("train/jpeg/upper.JPEG", "jpg");
        Put("test/bmp/000.BMP", "bmp");
        Put("test/jpeg/000.jpeg", "jpg");

        var split = DataSource.Load("imagefolder:" + root);
        Assert.Equal(new[] { "bmp", "jpeg" }, split.Train.ClassNames);
        Assert.Equal((7, 2), (split.Train.Count, split.Test.Count));
        Assert.Equal((3, H, W), (split.Train.Channels, split.Train.Height, split.Train.Width));
        var test = Assert.IsType<ImageDataset>(split.Test);
        int n = 3 * H * W;
        // The test set in file order: test/bmp/000.BMP, test/jpeg/000.jpeg.
        Assert.Equal(Chw(images["test/bmp/000.BMP"]), test.Pixels[..n]);
        var want = Chw(images["test/jpeg/000.jpeg"]);
        var diff = want.Zip(test.Pixels[n..(2 * n)], (a, b) => Math.Abs(a - b)).ToArray();
        Assert.True(diff.Average() < 4 && diff.Max() <= 30, $"JPEG mean |error| {diff.Average():F2}, max {diff.Max()}");
        Assert.Equal(new[] { 0, 1 }, test.Labels);

        // A truncated JPEG and a BMP with a corrupt header: the error names the file.
        string jpg = Path.Combine(root, "train", "jpeg", "001.jpg");
        var bytes = File.ReadAllBytes(jpg);
        File.WriteAllBytes(jpg, bytes[..(bytes.Length / 3)]);
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root));
        Assert.Contains(jpg, e.Message);
        File.WriteAllBytes(jpg, bytes);
        string bmp = Path.Combine(root, "train", "bmp", "002.bmp");
        var b = File.ReadAllBytes(bmp);
        for (int i = 2; i < 30; i++) b[i] = 0xFF;
        File.WriteAllBytes(bmp, b);
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root));
        Assert.Contains(bmp, e.Message);
    }
}
