using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Formats;

/// <summary>Reader and writer for the safetensors format (8-byte little-endian header length, JSON
/// header with dtype/shape/data_offsets per tensor and an optional "__metadata__" string map, then the
/// raw little-endian data). Files written here load in Python with the `safetensors` package.</summary>
public static class SafeTensors
{
    static readonly Dictionary<ScalarType, string> DtypeNames = new()
    {
        [ScalarType.Float32] = "F32", [ScalarType.Float64] = "F64", [ScalarType.Float16] = "F16",
        [ScalarType.BFloat16] = "BF16", [ScalarType.Int64] = "I64", [ScalarType.Int32] = "I32",
        [ScalarType.Int16] = "I16", [ScalarType.Int8] = "I8", [ScalarType.Byte] = "U8", [ScalarType.Bool] = "BOOL",
    };

    static readonly Dictionary<string, ScalarType> DtypesByName = DtypeNames.ToDictionary(kv => kv.Value, kv => kv.Key);

    static int ElementSize(ScalarType t) => t switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        _ => 1,
    };

    /// <summary>Writes tensors (any device; copied to CPU) atomically. Names are sorted so the same
    /// content gives the same bytes.</summary>
    /// <param name="path">The file to write.</param>
    /// <param name="tensors">The tensors, by name.</param>
    /// <param name="metadata">The header's "__metadata__" strings.</param>
    /// <param name="onChecksum">Receives the file's checksum (<see cref="Checksum"/>) before the file
    /// is renamed into place: the writer records it in the artifact's manifest.</param>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null,
        Action<string>? onChecksum = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        // The tensors' own CPU memory is written (no managed copy of every byte: a feature-store
        // block is tens of MB, and large arrays are freed only by a full garbage collection).
        var blobs = new List<Tensor>(names.Count);
        try
        {
            var header = new Dictionary<string, object>();
            if (metadata is { Count: > 0 }) header["__metadata__"] = metadata.ToDictionary(kv => kv.Key, kv => kv.Value);
            long offset = 0;
            foreach (var name in names)
            {
                var t = tensors[name];
                if (!DtypeNames.TryGetValue(t.dtype, out var dt))
                    throw new InfluenceSharpException($"{path}: tensor '{name}' has dtype {t.dtype}, which safetensors output does not support");
                var c = t.detach().cpu().contiguous();
                blobs.Add(c);
                long length = c.numel() * ElementSize(t.dtype);
                header[name] = new Dictionary<string, object>
                {
                    ["dtype"] = dt, ["shape"] = t.shape, ["data_offsets"] = new[] { offset, offset + length },
                };
                offset += length;
            }
            byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
            int padded = (json.Length + 7) / 8 * 8;
            var sum = onChecksum is null ? null : new Checksum.Builder();
            AtomicFile.Write(path, s =>
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
                byte[] pad = new byte[padded - json.Length];
                pad.AsSpan().Fill((byte)' ');
                s.Write(len); sum?.Append(len);
                s.Write(json); sum?.Append(json);
                s.Write(pad); sum?.Append(pad);
                foreach (var b in blobs)
                {
                    if (b.numel() == 0) continue;
                    var bytes = b.bytes;
                    s.Write(bytes); sum?.Append(bytes);
                }
            }, onChecksum is null ? null : _ => onChecksum(sum!.Result));
        }
        finally
        {
            foreach (var b in blobs) b.Dispose();
        }
    }

    /// <summary>Writes a safetensors header (8-byte little-endian length, the JSON padded with spaces
    /// to a multiple of 8) for a writer that streams the data after it itself.</summary>
    public static void WriteHeader(Stream s, Dictionary<string, object> header)
    {
        byte[] json = JsonSerializer.SerializeToUtf8Bytes(header);
        int padded = (json.Length + 7) / 8 * 8;
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        s.Write(len);
        s.Write(json);
        for (int i = json.Length; i < padded; i++) s.WriteByte((byte)' ');
    }

    /// <summary>True when the file is a whole safetensors file: its header parses and its length is
    /// exactly the header plus the data its tensors' offsets end at (false for a truncated file).
    /// Reads the header only.</summary>
    public static bool IsWhole(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            Span<byte> len = stackalloc byte[8];
            if (f.Read(len) != 8) return false;
            ulong hlen = BinaryPrimitives.ReadUInt64LittleEndian(len);
            if (hlen > 100_000_000 || (long)hlen > f.Length - 8) return false;
            var header = new byte[hlen];
            f.ReadExactly(header);
            using var doc = JsonDocument.Parse(header);
            long end = 0;
            foreach (var p in doc.RootElement.EnumerateObject())
                if (p.Name != "__metadata__") end = Math.Max(end, p.Value.GetProperty("data_offsets")[1].GetInt64());
            return f.Length == 8 + (long)hlen + end;
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The tensors of a safetensors file as its header describes them (name, dtype name
    /// such as "U8" or "F32", shape, absolute byte offset and length of the data), without reading
    /// any data: for inputs too large to read whole (they are then read in place or streamed). The header
    /// is checked as <see cref="Load(string)"/> checks it.</summary>
    public static IReadOnlyDictionary<string, SafeTensorsEntry> Entries(string path) => ReadHeader(path).Entries;

    static (IReadOnlyDictionary<string, SafeTensorsEntry> Entries, Dictionary<string, string> Metadata) ReadHeader(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        using var fs = File.OpenRead(path);
        long length = fs.Length;
        var pre = new byte[8];
        if (fs.ReadAtLeast(pre, 8, throwOnEndOfStream: false) < 8) throw new InfluenceSharpException($"{path}: not a safetensors file (shorter than its 8-byte header length)");
        ulong hlen = BinaryPrimitives.ReadUInt64LittleEndian(pre);
        if (hlen > (ulong)(length - 8) || hlen > 100_000_000)
            throw new InfluenceSharpException($"{path}: not a safetensors file (header length {hlen} exceeds file size {length})");
        var header = new byte[hlen];
        fs.ReadExactly(header);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new InfluenceSharpException($"{path}: corrupt safetensors header (not valid JSON at byte {e.BytePositionInLine ?? 0} of its {hlen}-byte header): the file is damaged, or not a safetensors file", e); }
        long dataStart = 8 + (long)hlen, dataLen = length - dataStart;
        var entries = new Dictionary<string, SafeTensorsEntry>(StringComparer.Ordinal);
        var meta = new Dictionary<string, string>();
        using (doc)
        {
            try
            {
                foreach (var p in doc.RootElement.EnumerateObject())
                {
                    if (p.Name == "__metadata__")
                    {
                        foreach (var m in p.Value.EnumerateObject()) meta[m.Name] = m.Value.GetString() ?? "";
                        continue;
                    }
                    string dts = p.Value.GetProperty("dtype").GetString() ?? "";
                    if (!DtypesByName.TryGetValue(dts, out var dtype))
                        throw new InfluenceSharpException($"{path}: tensor '{p.Name}' has unsupported dtype '{dts}'");
                    long[] shape = p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    long[] offs = p.Value.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray();
                    long n = shape.Aggregate(1L, (a, b) => a * b);
                    if (offs.Length != 2 || offs[0] < 0 || offs[1] < offs[0] || offs[1] > dataLen)
                        throw new InfluenceSharpException($"{path}: tensor '{p.Name}' has data offsets outside the file (truncated?)");
                    if (offs[1] - offs[0] != n * ElementSize(dtype))
                        throw new InfluenceSharpException($"{path}: tensor '{p.Name}' has {offs[1] - offs[0]} bytes but shape [{string.Join(",", shape)}] of {dts} needs {n * ElementSize(dtype)}");
                    entries[p.Name] = new SafeTensorsEntry(p.Name, dts, shape, dataStart + offs[0], offs[1] - offs[0]);
                }
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException)
            {
                throw new InfluenceSharpException($"{path}: corrupt safetensors header (a tensor entry lacks its dtype, shape or data_offsets, or has values of the wrong kind): the file is damaged, or not a safetensors file", e);
            }
        }
        return (entries, meta);
    }

    /// <summary>Reads every tensor of a safetensors file onto the CPU. The caller owns (disposes) them.</summary>
    public static SafeTensorsFile Load(string path) => Load(path, null, null);

    /// <summary>As <see cref="Load(string)"/>, first checking the file's bytes against the checksum
    /// recorded in <paramref name="recordedIn"/> when written (none: unchecked).</summary>
    public static SafeTensorsFile Load(string path, string? expectedChecksum, string? recordedIn)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        // Read straight into the tensors, the checksum taken on the way (no managed copy of the file).
        IReadOnlyDictionary<string, SafeTensorsEntry> entries;
        Dictionary<string, string> meta;
        try { (entries, meta) = ReadHeader(path); }
        catch (InfluenceSharpException) when (expectedChecksum is not null)
        {
            // A damaged file: say so by its checksum when one was recorded.
            Checksum.Require(path, Checksum.OfFile(path), expectedChecksum, recordedIn ?? "its manifest");
            throw;
        }
        var tensors = new Dictionary<string, Tensor>();
        try
        {
            var sum = expectedChecksum is null ? null : new Checksum.Builder();
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            var buffer = new byte[1 << 16];
            void Skip(long upTo)
            {
                // Bytes no tensor holds (the header, gaps): only hashed.
                while (fs.Position < upTo)
                {
                    int n = fs.Read(buffer, 0, (int)Math.Min(buffer.Length, upTo - fs.Position));
                    if (n == 0) break;
                    sum?.Append(buffer.AsSpan(0, n));
                }
            }
            foreach (var e in entries.Values.OrderBy(e => e.Offset))
            {
                var t = torch.empty(e.Shape, DtypesByName[e.Dtype]);
                tensors[e.Name] = t;
                if (e.Length == 0) continue;
                if (fs.Position > e.Offset) fs.Position = e.Offset;   // overlapping tensors (not written here)
                Skip(e.Offset);
                var bytes = t.bytes;
                fs.ReadExactly(bytes);
                sum?.Append(bytes);
            }
            if (sum is not null)
            {
                Skip(fs.Length);
                Checksum.Require(path, sum.Result, expectedChecksum!, recordedIn ?? "its manifest");
            }
        }
        catch
        {
            foreach (var t in tensors.Values) t.Dispose();
            throw;
        }
        return new SafeTensorsFile(path, tensors, meta);
    }
}

/// <summary>One tensor of a safetensors file, as its header describes it: dtype name ("F32", "U8",
/// ...), shape, and the absolute byte offset and length of its little-endian data in the file.</summary>
public sealed record SafeTensorsEntry(string Name, string Dtype, long[] Shape, long Offset, long Length);

/// <summary>The contents of a safetensors file. Disposing it disposes the tensors.</summary>
public sealed class SafeTensorsFile : IDisposable
{
    public SafeTensorsFile(string path, Dictionary<string, Tensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path; Tensors = tensors; Metadata = metadata;
    }

    public string Path { get; }
    public Dictionary<string, Tensor> Tensors { get; }
    public Dictionary<string, string> Metadata { get; }

    public Tensor this[string name] => Tensors.TryGetValue(name, out var t) ? t
        : throw new InfluenceSharpException($"{Path}: has no tensor named '{name}'");

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
    }
}
