using System.IO.Compression;
using System.Text;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Data;

/// <summary>Writes the files users bring (image folders, .npy/.npz, CSV) for the reader tests.</summary>
internal static class UserDataFiles
{
    /// <summary>An image folder DIR/CLASS/NNN.png of <paramref name="perClass"/> random images per class;
    /// image sizes alternate between <paramref name="sizes"/>; 3 channels when <paramref name="rgb"/>.</summary>
    public static void ImageFolder(string dir, string[] classes, int perClass, Random rng, bool rgb = false, params (int H, int W)[] sizes)
    {
        if (sizes.Length == 0) sizes = new[] { (6, 6) };
        int k = 0;
        foreach (var c in classes)
        {
            Directory.CreateDirectory(Path.Combine(dir, c));
            for (int i = 0; i < perClass; i++, k++)
            {
                var (h, w) = sizes[k % sizes.Length];
                int ch = rgb ? 3 : 1;
                var px = new byte[h * w * ch];
                rng.NextBytes(px);
                File.WriteAllBytes(Path.Combine(dir, c, $"{i:D3}.png"), PngWriter.Encode(px, w, h, ch));
            }
        }
    }

    /// <summary>.npy bytes (format 1.0, little-endian, C order) of raw element bytes.</summary>
    public static byte[] Npy(string descr, long[] shape, byte[] data)
    {
        string shp = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shp}, }}";
        int total = 10 + dict.Length + 1;
        int pad = (64 - total % 64) % 64;
        dict = dict + new string(' ', pad) + "\n";
        var ms = new MemoryStream();
        ms.Write(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 });
        ms.Write(BitConverter.GetBytes((ushort)dict.Length));
        ms.Write(Encoding.Latin1.GetBytes(dict));
        ms.Write(data);
        return ms.ToArray();
    }

    public static byte[] NpyF32(float[] v, params long[] shape)
    {
        var b = new byte[v.Length * 4];
        Buffer.BlockCopy(v, 0, b, 0, b.Length);
        return Npy("<f4", shape, b);
    }

    public static byte[] NpyI64(long[] v)
    {
        var b = new byte[v.Length * 8];
        Buffer.BlockCopy(v, 0, b, 0, b.Length);
        return Npy("<i8", new long[] { v.Length }, b);
    }

    public static void Npz(string path, params (string Name, byte[] Npy)[] arrays)
    {
        using var fs = File.Create(path);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        foreach (var (name, npy) in arrays)
        {
            using var s = zip.CreateEntry(name + ".npy").Open();
            s.Write(npy);
        }
    }

    /// <summary>A CSV of <paramref name="n"/> rows: numeric columns age, income, and a string label
    /// (yes/no) that depends on age, so a model can learn it.</summary>
    public static void Csv(string path, int n, Random rng, string labelName = "label")
    {
        var sb = new StringBuilder($"age,income,{labelName}\n");
        for (int i = 0; i < n; i++)
        {
            int age = 20 + rng.Next(50);
            sb.Append(System.FormattableString.Invariant($"{age},{rng.Next(1000, 9000) / 10.0},{(age > 45 ? "yes" : "no")}\n"));
        }
        File.WriteAllText(path, sb.ToString());
    }
}
