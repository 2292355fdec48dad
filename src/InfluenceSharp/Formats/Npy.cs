using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using static TorchSharp.torch;

namespace InfluenceSharp.Formats;

public enum NpyDtype { Float32, Float64 }

/// <summary>What an .npy header says: element type, shape, and where the data starts.</summary>
public sealed record NpyHeader(NpyDtype Dtype, long[] Shape, long DataOffset)
{
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);
    public int ElementSize => Dtype == NpyDtype.Float64 ? 8 : 4;
    public long DataBytes => Count * ElementSize;
}

/// <summary>
/// NumPy .npy files, format version 1.0, little-endian '&lt;f4' / '&lt;f8', C order: what
/// <c>numpy.load</c> reads without arguments. Writes are atomic (temp file + rename); for matrices
/// written block by block see <see cref="NpyBlockWriter"/>.
/// </summary>
public static partial class Npy
{
    internal static readonly byte[] Magic = { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y' };

    public static void Write(string path, ReadOnlySpan<float> data, params long[] shape) => WriteCore(path, MemoryMarshal.AsBytes(data), data.Length, NpyDtype.Float32, shape);

    public static void Write(string path, ReadOnlySpan<double> data, params long[] shape) => WriteCore(path, MemoryMarshal.AsBytes(data), data.Length, NpyDtype.Float64, shape);

    /// <summary>Writes a float64 vector or matrix; <paramref name="onChecksum"/> receives the file's
    /// checksum before it is renamed into place (to be recorded in the manifest).</summary>
    public static void Write(string path, ReadOnlySpan<double> data, long[] shape, Action<string>? onChecksum) =>
        WriteCore(path, MemoryMarshal.AsBytes(data), data.Length, NpyDtype.Float64, shape, onChecksum);

    /// <summary>Writes a float32 or float64 tensor (any device, any rank) with its shape.</summary>
    public static void Write(string path, Tensor t)
    {
        var dtype = DtypeOf(t, path);
        using var c = t.detach().cpu().contiguous();
        WriteCore(path, c.bytes, c.numel(), dtype, t.shape);
    }

    private static void WriteCore(string path, ReadOnlySpan<byte> bytes, long count, NpyDtype dtype, long[] shape, Action<string>? onChecksum = null)
    {
        long expected = shape.Aggregate(1L, (a, b) => a * b);
        if (shape.Any(d => d < 0) || expected != count)
            throw new InfluenceSharpException($"{path}: {count} values do not fill shape ({string.Join(", ", shape)})");
        byte[] header = Header(dtype, shape);
        byte[] copy = bytes.ToArray();
        AtomicFile.Write(path, s => { s.Write(header); s.Write(copy); },
            onChecksum is null ? null : _ => { var sum = new Checksum.Builder(); sum.Append(header); sum.Append(copy); onChecksum(sum.Result); });
    }

    internal static NpyDtype DtypeOf(Tensor t, string path) => t.dtype switch
    {
        ScalarType.Float32 => NpyDtype.Float32,
        ScalarType.Float64 => NpyDtype.Float64,
        _ => throw new InfluenceSharpException($"{path}: .npy output supports float32 and float64, not {t.dtype}"),
    };

    /// <summary>The full header (magic, version, length, dict, padding, '\n'), padded so the data
    /// starts at a multiple of 64 bytes as NumPy does.</summary>
    internal static byte[] Header(NpyDtype dtype, long[] shape)
    {
        string descr = dtype == NpyDtype.Float64 ? "<f8" : "<f4";
        string dims = shape.Length == 1 ? $"({shape[0]},)" : "(" + string.Join(", ", shape.Select(d => d.ToString(CultureInfo.InvariantCulture))) + ")";
        string dict = $"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}";
        int total = (10 + dict.Length + 1 + 63) / 64 * 64;
        if (total - 10 > ushort.MaxValue) throw new InfluenceSharpException($".npy: shape ({string.Join(", ", shape)}) needs a header longer than version 1.0 allows");
        string padded = dict.PadRight(total - 10 - 1) + "\n";
        var h = new byte[total];
        Magic.CopyTo(h, 0);
        h[6] = 1; h[7] = 0;
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(8), (ushort)(total - 10));
        Encoding.ASCII.GetBytes(padded, h.AsSpan(10));
        return h;
    }

    /// <summary>Reads and validates the header: version 1.0/2.0, '&lt;f4' or '&lt;f8', C order, and a
    /// file long enough to hold the data it announces.</summary>
    public static NpyHeader ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        using var fs = File.OpenRead(path);
        return ReadHeader(fs, path);
    }

    private static NpyHeader ReadHeader(FileStream fs, string path)
    {
        var raw = ReadRawHeader(fs, path);
        var dtype = raw.Descr switch
        {
            "<f4" => NpyDtype.Float32,
            "<f8" => NpyDtype.Float64,
            var d => throw new InfluenceSharpException($"{path}: .npy dtype '{d}' is not supported (only '<f4' and '<f8')"),
        };
        raw.RequireCOrder(path);
        var shape = raw.ParseShape(path);
        var header = new NpyHeader(dtype, shape, raw.DataOffset);
        if (fs.Length < header.DataOffset + header.DataBytes)
            throw new InfluenceSharpException($"{path}: truncated .npy file: shape ({string.Join(", ", shape)}) needs {header.DataBytes} data bytes, the file has {fs.Length - header.DataOffset}");
        return header;
    }

    /// <summary>An .npy header as written, before its dtype is interpreted: the 'descr' text, the
    /// fortran_order flag, the shape text and where the data starts.</summary>
    internal readonly record struct RawHeader(string Descr, bool FortranOrder, string ShapeText, long DataOffset)
    {
        public void RequireCOrder(string name)
        {
            if (FortranOrder) throw new InfluenceSharpException($"{name}: Fortran-order .npy arrays are not supported (save with C order: np.ascontiguousarray)");
        }

        public long[] ParseShape(string name)
        {
            try
            {
                return ShapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                    .Select(s => long.Parse(s, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
            }
            catch (Exception e) when (e is FormatException or OverflowException) { throw new InfluenceSharpException($"{name}: malformed .npy shape ({ShapeText})"); }
        }
    }

    /// <summary>The one .npy header parser: magic, version 1.0/2.0/3.0, header length and the dict's
    /// descr, fortran_order and shape entries. <paramref name="name"/> (a file, or npz:entry) starts
    /// error messages; the stream is left at the start of the data.</summary>
    internal static RawHeader ReadRawHeader(Stream fs, string name)
    {
        var pre = new byte[12];
        fs.Position = 0;
        if (fs.ReadAtLeast(pre, 10, throwOnEndOfStream: false) < 10 || !pre.AsSpan(0, 6).SequenceEqual(Magic))
            throw new InfluenceSharpException($"{name}: not an .npy file (no \\x93NUMPY magic)");
        int major = pre[6];
        long hlen; int preLen;
        if (major == 1) { hlen = BinaryPrimitives.ReadUInt16LittleEndian(pre.AsSpan(8)); preLen = 10; }
        else if (major is 2 or 3)
        {
            fs.Position = 8;
            if (fs.ReadAtLeast(pre.AsSpan(8, 4), 4, throwOnEndOfStream: false) < 4)
                throw new InfluenceSharpException($"{name}: truncated .npy header");
            hlen = BinaryPrimitives.ReadUInt32LittleEndian(pre.AsSpan(8)); preLen = 12;
        }
        else throw new InfluenceSharpException($"{name}: unsupported .npy format version {major}.{pre[7]}");
        fs.Position = preLen;
        if (hlen > 1 << 20 || fs.Length < preLen + hlen)
            throw new InfluenceSharpException($"{name}: truncated .npy header (announces {hlen} bytes, the file has {fs.Length - preLen})");
        var hb = new byte[hlen];
        fs.ReadExactly(hb);
        string dict = Encoding.Latin1.GetString(hb);
        var descr = DescrRe().Match(dict);
        var fortran = FortranRe().Match(dict);
        var shapeM = ShapeRe().Match(dict);
        if (!descr.Success || !fortran.Success || !shapeM.Success)
            throw new InfluenceSharpException($"{name}: malformed .npy header: {dict.Trim()}");
        return new RawHeader(descr.Groups[1].Value, fortran.Groups[1].Value == "True", shapeM.Groups[1].Value, preLen + hlen);
    }

    /// <summary>Reads a whole .npy file into a CPU tensor of its dtype and shape.</summary>
    public static Tensor Read(string path) => Read(path, null, null);

    /// <summary>As <see cref="Read(string)"/>, first checking the file against the checksum recorded
    /// in <paramref name="recordedIn"/> when it was written (none: unchecked).</summary>
    public static Tensor Read(string path, string? expectedChecksum, string? recordedIn)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        Checksum.VerifyFile(path, expectedChecksum, recordedIn ?? "its manifest");
        using var fs = File.OpenRead(path);
        var h = ReadHeader(fs, path);
        var t = empty(h.Shape, h.Dtype == NpyDtype.Float64 ? ScalarType.Float64 : ScalarType.Float32);
        fs.Position = h.DataOffset;
        if (h.Count > 0) fs.ReadExactly(t.bytes);
        return t;
    }

    [GeneratedRegex(@"'descr'\s*:\s*'([^']*)'")] private static partial Regex DescrRe();
    [GeneratedRegex(@"'fortran_order'\s*:\s*(True|False)")] private static partial Regex FortranRe();
    [GeneratedRegex(@"'shape'\s*:\s*\(([^)]*)\)")] private static partial Regex ShapeRe();
}
