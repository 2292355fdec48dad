using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;

namespace InfluenceSharp.Formats;

/// <summary>An array read from NumPy's .npy format (a file, or an entry of an .npz zip), little-endian,
/// C order, of a numeric dtype (float16/32/64, int8..64, uint8..64, bool).</summary>
public sealed partial record NpyArray(string Name, string Dtype, long[] Shape, byte[] Data)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    public int ElementSize => int.Parse(Dtype[2..], CultureInfo.InvariantCulture);
    public bool IsUInt8 => Dtype is "|u1" or "<u1";

    /// <summary>Parses .npy bytes; <paramref name="name"/> (the file, or npz:entry) starts error messages.</summary>
    public static NpyArray Parse(byte[] b, string name)
    {
        using var ms = new MemoryStream(b, writable: false);
        var raw = Npy.ReadRawHeader(ms, name);
        string dtype = raw.Descr;
        if (dtype == "|b1") dtype = "|u1";
        if (!DtypeRe().IsMatch(dtype))
            throw new InfluenceSharpException($"{name}: .npy dtype '{raw.Descr}' is not supported (little-endian float, int, uint or bool)");
        raw.RequireCOrder(name);
        var dims = raw.ParseShape(name);
        var a = new NpyArray(name, dtype, dims, Array.Empty<byte>());
        long need = a.Count * a.ElementSize, have = b.Length - raw.DataOffset;
        if (have < need) throw new InfluenceSharpException($"{name}: truncated .npy data: shape ({string.Join(", ", dims)}) of {dtype} needs {need} bytes, the file has {have}");
        if (have > need) throw new InfluenceSharpException($"{name}: {have - need} bytes after the .npy data (not an .npy array, or corrupt)");
        return a with { Data = b.AsSpan((int)raw.DataOffset, (int)need).ToArray() };
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

    [GeneratedRegex(@"^[<|](f[248]|i[1248]|u[1248])$")] private static partial Regex DtypeRe();
}
