using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;

namespace InfluenceSharp.Data;

/// <summary>An array read from NumPy's .npy format (a file, or an entry of an .npz zip), little-endian,
/// C order, of a numeric dtype (float16/32/64, int8..64, uint8..64, bool).</summary>
public sealed partial record NpyArray(string Name, string Dtype, long[] Shape, byte[] Data)
{
    static ReadOnlySpan<byte> Magic => [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    public int ElementSize => int.Parse(Dtype[2..], CultureInfo.InvariantCulture);
    public bool IsFloat => Dtype[1] == 'f';
    public bool IsUInt8 => Dtype is "|u1" or "<u1";

    /// <summary>Parses .npy bytes; <paramref name="name"/> (the file, or npz:entry) starts error messages.</summary>
    public static NpyArray Parse(byte[] b, string name)
    {
        if (b.Length < 10 || !b.AsSpan(0, 6).SequenceEqual(Magic)) throw new InfluenceSharpException($"{name}: not an .npy array (no \\x93NUMPY magic)");
        int major = b[6];
        int hlen, pre;
        if (major == 1) { hlen = BinaryPrimitives.ReadUInt16LittleEndian(b.AsSpan(8)); pre = 10; }
        else if (major is 2 or 3)
        {
            if (b.Length < 12) throw new InfluenceSharpException($"{name}: truncated .npy header");
            hlen = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(b.AsSpan(8)), int.MaxValue); pre = 12;
        }
        else throw new InfluenceSharpException($"{name}: unsupported .npy format version {major}.{b[7]}");
        if ((long)pre + hlen > b.Length) throw new InfluenceSharpException($"{name}: truncated .npy header (announces {hlen} bytes, the file has {b.Length - pre})");
        string dict = System.Text.Encoding.Latin1.GetString(b, pre, hlen);
        var descr = DescrRe().Match(dict);
        var order = OrderRe().Match(dict);
        var shape = ShapeRe().Match(dict);
        if (!descr.Success || !order.Success || !shape.Success) throw new InfluenceSharpException($"{name}: malformed .npy header: {dict.Trim()}");
        string dtype = descr.Groups[1].Value;
        if (dtype == "|b1") dtype = "|u1";
        if (!DtypeRe().IsMatch(dtype))
            throw new InfluenceSharpException($"{name}: .npy dtype '{descr.Groups[1].Value}' is not supported (little-endian float, int, uint or bool)");
        if (order.Groups[1].Value == "True") throw new InfluenceSharpException($"{name}: Fortran-order .npy arrays are not supported (save with C order: np.ascontiguousarray)");
        long[] dims;
        try
        {
            dims = shape.Groups[1].Value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => long.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
        }
        catch (Exception e) when (e is FormatException or OverflowException) { throw new InfluenceSharpException($"{name}: malformed .npy shape ({shape.Groups[1].Value})"); }
        var a = new NpyArray(name, dtype, dims, Array.Empty<byte>());
        long need = a.Count * a.ElementSize, have = b.Length - pre - hlen;
        if (have < need) throw new InfluenceSharpException($"{name}: truncated .npy data: shape ({string.Join(", ", dims)}) of {dtype} needs {need} bytes, the file has {have}");
        if (have > need) throw new InfluenceSharpException($"{name}: {have - need} bytes after the .npy data (not an .npy array, or corrupt)");
        return a with { Data = b.AsSpan(pre + hlen, (int)need).ToArray() };
    }

    /// <summary>Element <paramref name="i"/> as a double.</summary>
    public double this[long i]
    {
        get
        {
            var s = Data.AsSpan((int)(i * ElementSize), ElementSize);
            return (Dtype[1], ElementSize) switch
            {
                ('f', 2) => (double)BitConverter.ToHalf(s),
                ('f', 4) => BinaryPrimitives.ReadSingleLittleEndian(s),
                ('f', 8) => BinaryPrimitives.ReadDoubleLittleEndian(s),
                ('i', 1) => (sbyte)s[0],
                ('i', 2) => BinaryPrimitives.ReadInt16LittleEndian(s),
                ('i', 4) => BinaryPrimitives.ReadInt32LittleEndian(s),
                ('i', 8) => BinaryPrimitives.ReadInt64LittleEndian(s),
                ('u', 1) => s[0],
                ('u', 2) => BinaryPrimitives.ReadUInt16LittleEndian(s),
                ('u', 4) => BinaryPrimitives.ReadUInt32LittleEndian(s),
                ('u', 8) => BinaryPrimitives.ReadUInt64LittleEndian(s),
                _ => throw new InvalidOperationException(Dtype),
            };
        }
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")] private static partial Regex DescrRe();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")] private static partial Regex OrderRe();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")] private static partial Regex ShapeRe();
    [GeneratedRegex(@"^[<|](f[248]|i[1248]|u[1248])$")] private static partial Regex DtypeRe();
}
