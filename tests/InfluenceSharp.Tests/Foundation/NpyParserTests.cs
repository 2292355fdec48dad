using System.Buffers.Binary;
using System.Text;

namespace InfluenceSharp.Tests.Foundation;

/// <summary>The scores' .npy reader and the data reader's .npy parser share one header parser: they
/// accept the same headers (versions 1.0 and 2.0) and refuse the same malformed ones.</summary>
public class NpyParserTests
{
    static byte[] File(string dict, int major, byte[] data)
    {
        int pre = major == 1 ? 10 : 12;
        int total = (pre + dict.Length + 1 + 63) / 64 * 64;
        var h = new byte[total];
        Npy.Magic.CopyTo(h, 0);
        h[6] = (byte)major;
        if (major == 1) BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), (ushort)(total - pre));
        else BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(8), (uint)(total - pre));
        Encoding.ASCII.GetBytes(dict.PadRight(total - pre - 1) + "\n", h.AsSpan(pre));
        return h.Concat(data).ToArray();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void BothReadersAgreeOnShapeAndData(int major)
    {
        var rng = TestSeed.Random();
        var values = Enumerable.Range(0, 12).Select(_ => (float)rng.NextDouble()).ToArray();
        var bytes = File("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", major, values.SelectMany(BitConverter.GetBytes).ToArray());
        using var dir = new TempDir();
        System.IO.File.WriteAllBytes(dir.File("a.npy"), bytes);
        var header = Npy.ReadHeader(dir.File("a.npy"));
        var array = NpyArray.Parse(bytes, "a.npy");
        Assert.Equal(new long[] { 3, 4 }, header.Shape);
        Assert.Equal(header.Shape, array.Shape);
        Assert.Equal(bytes.Length - 48, header.DataOffset);
        using var t = Npy.Read(dir.File("a.npy"));
        Assert.Equal(values, t.data<float>().ToArray());
        Assert.Equal(values.Select(v => (double)v), Enumerable.Range(0, 12).Select(i => array[i]));
    }

    [Theory]
    [InlineData("{'descr': '<f4', 'fortran_order': True, 'shape': (3, 4), }", "Fortran")]
    [InlineData("{'descr': '<f4', 'fortran_order': False, 'shape': (3, x), }", "malformed .npy shape")]
    [InlineData("{'descr': '<f4', 'shape': (3, 4), }", "malformed .npy header")]
    public void BothReadersRefuseTheSameHeaders(string dict, string message)
    {
        var bytes = File(dict, 1, new byte[48]);
        using var dir = new TempDir();
        System.IO.File.WriteAllBytes(dir.File("b.npy"), bytes);
        Assert.Contains(message, Assert.Throws<InfluenceSharpException>(() => Npy.ReadHeader(dir.File("b.npy"))).Message);
        Assert.Contains(message, Assert.Throws<InfluenceSharpException>(() => NpyArray.Parse(bytes, "b.npy")).Message);
        var wrongVersion = (byte[])bytes.Clone();
        wrongVersion[6] = 9;
        System.IO.File.WriteAllBytes(dir.File("b.npy"), wrongVersion);
        Assert.Contains("version 9.0", Assert.Throws<InfluenceSharpException>(() => Npy.ReadHeader(dir.File("b.npy"))).Message);
        Assert.Contains("version 9.0", Assert.Throws<InfluenceSharpException>(() => NpyArray.Parse(wrongVersion, "b.npy")).Message);
    }
}
