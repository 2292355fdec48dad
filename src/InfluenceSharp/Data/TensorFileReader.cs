using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using InfluenceSharp.Formats;

namespace InfluenceSharp.Data;

/// <summary>
/// Reads <c>tensors:FILE</c>: data prepared in Python, inputs X [N, ...] and integer labels y [N].
/// FILE is a <c>.safetensors</c> file or an <c>.npz</c> archive holding tensors named X and y
/// (other names: <c>?x=NAME&amp;y=NAME</c>), or a pair <c>X.npy,y.npy</c>. X may be
/// uint8 images [N, C, H, W] (C = 1 or 3) or [N, H, W], which are normalised like the built-in image
/// data sets; or any other numeric type and shape [N, D] (flat features), [N, H, W] or [N, C, H, W],
/// which the model gets as float32 exactly as stored (normalise in Python). Labels are integers
/// 0..K-1 (K = the largest label + 1). The test set is, in this order: <c>?test=FILE</c> (the same
/// kind; --test-data), tensors named X_test and y_test in the same file, or a seeded split stratified
/// by class (<c>test-fraction</c>, default 0.2, <c>split-seed</c>, default 0).
/// </summary>
public static partial class TensorFileReader
{
    /// <summary>X as the data set reads it: uint8 images (records of C·H·W bytes) or float32
    /// examples (records of 4·D bytes), in a store that reads the input file or
    /// of its decoded copy in the cache; in memory only when no cache can be written.</summary>
    sealed record Inputs(string Source, long[] Shape, PixelStore Store, bool IsUInt8);

    /// <summary>A tensor's data in a file, not yet read: little-endian, C order, at
    /// <paramref name="Offset"/>. <paramref name="Dtype"/> is a NumPy-like code: kind and byte size
    /// ("u1", "f4", "i8", ...; "bf2" bfloat16, "b1" bool).</summary>
    sealed record Located(string Source, string File, long Offset, string Dtype, long[] Shape)
    {
        public long Count => Shape.Aggregate(1L, (a, b) => a * b);
        public int ElementSize => Dtype == "bf2" ? 2 : int.Parse(Dtype[1..], CultureInfo.InvariantCulture);
    }

    /// <summary>An npz entry's X: opened again when its decoded copy has to be written.</summary>
    sealed record NpzEntry(string Source, string File, string Entry, string Dtype, long[] Shape);

    public static DataSplit Load(DataSpec spec)
    {
        string xName = spec["x"] ?? "X", yName = spec["y"] ?? "y";
        string path = Absolute(spec.Path!);
        var source = spec with { Path = path };
        var (x, y, xt, yt) = Read(path, xName, yName, wantTest: spec["test"] is null);
        if (spec["test"] is { } testPath)
        {
            string tp = Absolute(testPath);
            (xt, yt, _, _) = Read(tp, xName, yName, wantTest: false);
            source = source.Set("test", tp);
        }
        int numClasses = Math.Max(y.DefaultIfEmpty(0).Max(), yt?.DefaultIfEmpty(0).Max() ?? 0) + 1;
        if (numClasses < 2) throw new InfluenceSharpException($"{x.Source}: the labels in {yName} hold one class (0); classification needs at least two");
        var train = Build(x, y, numClasses, "tensors-train").WithSources(Indices(path, xName, y.Length));
        LabeledDataset test;
        if (xt is not null && yt is not null)
        {
            if (!xt.Shape.AsSpan(1).SequenceEqual(x.Shape.AsSpan(1)) || xt.IsUInt8 != x.IsUInt8)
                throw new InfluenceSharpException($"{xt.Source}: test inputs are [{string.Join(",", xt.Shape)}] {(xt.IsUInt8 ? "uint8" : "float")} but training inputs (in {x.Source}) are [{string.Join(",", x.Shape)}] {(x.IsUInt8 ? "uint8" : "float")}: the same shape per example and type are needed");
            test = Build(xt, yt, numClasses, "tensors-test").WithSources(spec["test"] is { } tf ? Indices(Absolute(tf), xName, yt.Length) : Indices(path, xName + "_test", yt.Length));
        }
        else
        {
            var (tr, te) = DataSource.StratifiedSplit(train.Labels, numClasses, spec.TestFraction, spec.SplitSeed);
            if (te.Length == 0) throw new InfluenceSharpException($"{x.Source}: the test split is empty (too few examples per class for test-fraction {spec.TestFraction})");
            test = train.Subset(te, "tensors-test");
            train = train.Subset(tr, "tensors-train");
            source = source.Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        }
        return new DataSplit(train, test, source.ToString());
    }

    /// <summary>Sources 0..n−1 of the inputs tensor: in FILE, or in X.npy of a pair X.npy,y.npy.</summary>
    static ExampleSource[] Indices(string path, string tensor, int n)
    {
        if (path.Contains(',')) { path = path.Split(',')[0]; tensor = Path.GetFileNameWithoutExtension(path); }
        return Enumerable.Range(0, n).Select(i => ExampleSource.OfTensor(path, tensor, i)).ToArray();
    }

    static string Absolute(string p) =>
        p.Contains(',') ? string.Join(",", p.Split(',').Select(Path.GetFullPath)) : Path.GetFullPath(p);

    static LabeledDataset Build(Inputs x, int[] y, int numClasses, string name)
    {
        var shape = x.Shape.Skip(1).Select(d => (int)d).ToArray();
        if (x.IsUInt8)
            return shape.Length == 2 ? new ImageDataset(name, x.Store, null, y, 1, shape[0], shape[1], numClasses)
                                     : new ImageDataset(name, x.Store, null, y, shape[0], shape[1], shape[2], numClasses);
        return new FloatDataset(name, x.Store, null, shape, y, numClasses);
    }

    /// <summary>uint8 [N, H, W] or [N, C, H, W] with C = 1 or 3 are images; every other X is read as float32.</summary>
    static bool IsImage(string dtype, long[] shape) => dtype is "u1" or "b1" && (shape.Length == 3 || (shape.Length == 4 && shape[1] is 1 or 3));

    /// <summary>Reads X and y (and X_test, y_test when <paramref name="wantTest"/> and present).</summary>
    static (Inputs X, int[] Y, Inputs? XTest, int[]? YTest) Read(string path, string xName, string yName, bool wantTest)
    {
        var parts = path.Split(',');
        if (parts.Length == 2)
        {
            if (!parts.All(p => p.EndsWith(".npy", StringComparison.OrdinalIgnoreCase)))
                throw new InfluenceSharpException($"tensors:{path}: a pair must be X.npy,y.npy");
            var xl = LocateNpy(parts[0]);
            var ya = NpyArray.Parse(ReadFile(parts[1]), parts[1]);
            var y = Labels(ya);
            CheckShape(xl.Source, xl.Shape, y.Length, ya.Name);
            return (Materialise(xl), y, null, null);
        }
        if (parts.Length > 2) throw new InfluenceSharpException($"tensors:{path}: give one .safetensors or .npz file, or X.npy,y.npy");
        if (path.EndsWith(".npy", StringComparison.OrdinalIgnoreCase))
            throw new InfluenceSharpException($"tensors:{path}: one .npy file holds one array; give the inputs and the labels as tensors:X.npy,y.npy (or an .npz or .safetensors file)");
        if (path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase)) return ReadNpz(path, xName, yName, wantTest);
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return ReadSafeTensors(path, xName, yName, wantTest);
        throw new InfluenceSharpException($"tensors:{path}: expected a .safetensors or .npz file, or X.npy,y.npy");
    }

    static byte[] ReadFile(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try { return File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
    }

    /// <summary>An .npy file's array, located (header read and checked, no data read).</summary>
    static Located LocateNpy(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try
        {
            using var fs = File.OpenRead(path);
            var (dtype, shape, offset) = NpyLayout(fs, path);
            long need = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype), have = fs.Length - offset;
            if (have < need) throw new InfluenceSharpException($"{path}: truncated .npy data: shape ({string.Join(", ", shape)}) of {dtype} needs {need} bytes, the file has {have}");
            if (have > need) throw new InfluenceSharpException($"{path}: {have - need} bytes after the .npy data (not an .npy array, or corrupt)");
            return new Located(path, path, offset, dtype, shape);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
    }

    /// <summary>An .npy header's dtype code, shape and data offset (the stream: at its start, seekable).</summary>
    static (string Dtype, long[] Shape, long Offset) NpyLayout(Stream s, string name)
    {
        var raw = Npy.ReadRawHeader(s, name);
        string d = raw.Descr;
        if (d == "|b1") d = "|u1";
        if (!NpyDtypeRe().IsMatch(d))
            throw new InfluenceSharpException($"{name}: .npy dtype '{raw.Descr}' is not supported (little-endian float, int, uint or bool)");
        raw.RequireCOrder(name);
        return (d[1..], raw.ParseShape(name), raw.DataOffset);
    }

    static int ElementSize(string dtype) => dtype == "bf2" ? 2 : int.Parse(dtype[1..], CultureInfo.InvariantCulture);

    static (Inputs, int[], Inputs?, int[]?) ReadNpz(string path, string xName, string yName, bool wantTest)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        var labels = new Dictionary<string, NpyArray>(StringComparer.Ordinal);
        var inputs = new Dictionary<string, NpzEntry>(StringComparer.Ordinal);
        try
        {
            using var zip = ZipFile.OpenRead(path);
            foreach (var e in zip.Entries)
            {
                if (!e.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
                string key = e.FullName[..^4];
                string name = $"{path}:{e.FullName}";
                if (key == yName || key == yName + "_test")
                {
                    using var s = e.Open();
                    using var ms = new MemoryStream();
                    s.CopyTo(ms);
                    labels[key] = NpyArray.Parse(ms.ToArray(), name);
                }
                else if (key == xName || key == xName + "_test")
                {
                    // Only the header is read here; the data are decoded once into the cache.
                    using var s = e.Open();
                    var (dtype, shape, offset) = NpyLayout(new MemoryStream(NpyHeaderBytes(s, name), writable: false), name);
                    long need = shape.Aggregate(1L, (a, b) => a * b) * ElementSize(dtype), have = e.Length - offset;
                    if (have < need) throw new InfluenceSharpException($"{name}: truncated .npy data: shape ({string.Join(", ", shape)}) of {dtype} needs {need} bytes, the file has {have}");
                    if (have > need) throw new InfluenceSharpException($"{name}: {have - need} bytes after the .npy data (not an .npy array, or corrupt)");
                    inputs[key] = new NpzEntry(name, path, e.FullName, dtype, shape);
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new InfluenceSharpException($"{path}: not a readable .npz (zip) archive: {e.Message}", e);
        }
        NpzEntry GetX(string k) => inputs.TryGetValue(k, out var a) ? a
            : throw new InfluenceSharpException($"{path}: has no array named '{k}' (name others with tensors:{path}?x=NAME&y=NAME)");
        NpyArray GetY(string k) => labels.TryGetValue(k, out var a) ? a
            : throw new InfluenceSharpException($"{path}: has no array named '{k}' (name others with tensors:{path}?x=NAME&y=NAME)");
        var xe = GetX(xName);
        var y = Labels(GetY(yName));
        CheckShape(xe.Source, xe.Shape, y.Length, $"{path}:{yName}");
        if (wantTest && inputs.ContainsKey(xName + "_test") != labels.ContainsKey(yName + "_test"))
            throw new InfluenceSharpException($"{path}: has only one of {xName}_test and {yName}_test");
        Inputs? xt = null; int[]? yt = null;
        if (wantTest && inputs.TryGetValue(xName + "_test", out var xte))
        {
            yt = Labels(labels[yName + "_test"]);
            CheckShape(xte.Source, xte.Shape, yt.Length, $"{path}:{yName}_test");
        }
        var x = MaterialiseNpz(xe);
        if (yt is not null) xt = MaterialiseNpz(inputs[xName + "_test"]);
        return (x, y, xt, yt);
    }

    /// <summary>The bytes of an .npy header read from a stream that cannot seek (an npz entry).</summary>
    static byte[] NpyHeaderBytes(Stream s, string name)
    {
        var pre = new byte[12];
        int got = s.ReadAtLeast(pre.AsSpan(0, 10), 10, throwOnEndOfStream: false);
        if (got < 10) return pre[..got];
        int preLen = pre[6] == 1 ? 10 : 12;
        if (preLen == 12 && s.ReadAtLeast(pre.AsSpan(10, 2), 2, throwOnEndOfStream: false) < 2) return pre[..10];
        long hlen = preLen == 10 ? BinaryPrimitives.ReadUInt16LittleEndian(pre.AsSpan(8)) : BinaryPrimitives.ReadUInt32LittleEndian(pre.AsSpan(8));
        if (hlen > 1 << 20) throw new InfluenceSharpException($"{name}: truncated .npy header (announces {hlen} bytes)");
        var all = new byte[preLen + hlen];
        pre.AsSpan(0, preLen).CopyTo(all);
        int n = s.ReadAtLeast(all.AsSpan(preLen), (int)hlen, throwOnEndOfStream: false);
        return all[..(preLen + n)];
    }

    static (Inputs, int[], Inputs?, int[]?) ReadSafeTensors(string path, string xName, string yName, bool wantTest)
    {
        var entries = SafeTensors.Entries(path);
        SafeTensorsEntry Get(string k) => entries.TryGetValue(k, out var t) ? t
            : throw new InfluenceSharpException($"{path}: has no tensor named '{k}' (it has {string.Join(", ", entries.Keys.Take(8))}; name others with tensors:{path}?x=NAME&y=NAME)");
        Located Locate(SafeTensorsEntry e)
        {
            string code = e.Dtype switch
            {
                "U8" => "u1", "I8" => "i1", "I16" => "i2", "I32" => "i4", "I64" => "i8",
                "F16" => "f2", "BF16" => "bf2", "F32" => "f4", "F64" => "f8", "BOOL" => "b1",
                var d => throw new InfluenceSharpException($"{path}: tensor '{e.Name}' has unsupported dtype '{d}'"),
            };
            return new Located($"{path}:{e.Name}", path, e.Offset, code, e.Shape);
        }
        var xl = Locate(Get(xName));
        if (xl.Dtype == "b1") throw new InfluenceSharpException($"{xl.Source}: boolean inputs; give numbers");
        var y = Labels(Locate(Get(yName)));
        CheckShape(xl.Source, xl.Shape, y.Length, $"{path}:{yName}");
        if (wantTest && entries.ContainsKey(xName + "_test") != entries.ContainsKey(yName + "_test"))
            throw new InfluenceSharpException($"{path}: has only one of {xName}_test and {yName}_test");
        Inputs? xt = null; int[]? yt = null;
        Located? xtl = null;
        if (wantTest && entries.TryGetValue(xName + "_test", out var xte))
        {
            xtl = Locate(xte);
            if (xtl.Dtype == "b1") throw new InfluenceSharpException($"{xtl.Source}: boolean inputs; give numbers");
            yt = Labels(Locate(entries[yName + "_test"]));
            CheckShape(xtl.Source, xtl.Shape, yt.Length, $"{path}:{yName}_test");
        }
        var x = Materialise(xl);
        if (xtl is not null) xt = Materialise(xtl);
        return (x, y, xt, yt);
    }

    static void CheckShape(string source, long[] shape, int labels, string yName)
    {
        if (shape.Length is < 2 or > 4)
            throw new InfluenceSharpException($"{source}: inputs are [{string.Join(",", shape)}]; expected [N, D], [N, H, W] or [N, C, H, W]");
        if (shape.Skip(1).Any(d => d < 1) || shape.Skip(1).Aggregate(1L, (a, b) => a * b) > int.MaxValue / 4)
            throw new InfluenceSharpException($"{source}: inputs [{string.Join(",", shape)}] have an empty or too large example shape");
        if (shape[0] != labels)
            throw new InfluenceSharpException($"{source} has {shape[0]} examples but {yName} has {labels} labels");
        if (labels == 0) throw new InfluenceSharpException($"{source}: no examples");
    }

    /// <summary>X of a file as a store: uint8 images and float32 values are read where they lie
    /// (float32 values are checked finite in one pass through the file); other types are converted
    /// to float32 once, into a cache file keyed on the input file's content, which is then read.</summary>
    static Inputs Materialise(Located x)
    {
        bool image = IsImage(x.Dtype, x.Shape);
        long n = x.Shape[0];
        int record = checked((int)(x.Count / n * (image ? 1 : 4)));
        if (image || x.Dtype == "f4")
        {
            var store = new FilePixelStore(x.File, x.Offset, record, record, n);
            if (!image) CheckFinite(store, x.Source);
            return new Inputs(x.Source, x.Shape, store, image);
        }
        var converted = Cached(x.File, $"{x.Source}\n{x.Offset}\n{x.Dtype}\n{string.Join(",", x.Shape)}", record, n, s =>
        {
            using var fs = new FileStream(x.File, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            fs.Position = x.Offset;
            Convert(fs, x.Count, x.Dtype, s, x.Source, x.Count / n);
        });
        return new Inputs(x.Source, x.Shape, converted, false);
    }

    /// <summary>An npz entry's X decoded once into the cache (uint8 images as they are, every other
    /// type as float32) and read from there.</summary>
    static Inputs MaterialiseNpz(NpzEntry x)
    {
        bool image = IsImage(x.Dtype, x.Shape);
        long n = x.Shape[0], count = x.Shape.Aggregate(1L, (a, b) => a * b);
        int record = checked((int)(count / n * (image ? 1 : 4)));
        var store = Cached(x.File, $"{x.Entry}\n{x.Dtype}\n{string.Join(",", x.Shape)}\n{(image ? "u8" : "f32")}", record, n, s =>
        {
            try
            {
                using var zip = ZipFile.OpenRead(x.File);
                var e = zip.GetEntry(x.Entry) ?? throw new InfluenceSharpException($"{x.Source}: the entry disappeared from the archive while it was read");
                using var z = e.Open();
                NpyHeaderBytes(z, x.Source);
                if (image) CopyExactly(z, s, count, x.Source);
                else Convert(z, count, x.Dtype, s, x.Source, count / n);
            }
            catch (InvalidDataException e) { throw new InfluenceSharpException($"{x.File}: not a readable .npz (zip) archive: {e.Message}", e); }
        });
        return new Inputs(x.Source, x.Shape, store, image);
    }

    static void CopyExactly(Stream from, Stream to, long bytes, string source)
    {
        var buf = new byte[1 << 20];
        while (bytes > 0)
        {
            int n = from.Read(buf, 0, (int)Math.Min(buf.Length, bytes));
            if (n == 0) throw new InfluenceSharpException($"{source}: truncated .npy data");
            to.Write(buf, 0, n);
            bytes -= n;
        }
    }

    /// <summary>Reads <paramref name="count"/> elements of <paramref name="dtype"/> and writes them as
    /// float32, refusing a non-finite value (naming the example and position).</summary>
    static void Convert(Stream from, long count, string dtype, Stream to, string source, long exampleSize)
    {
        int size = ElementSize(dtype);
        int per = (1 << 20) / size;
        var inBuf = new byte[per * size];
        var outBuf = new float[per];
        long done = 0;
        while (done < count)
        {
            int m = (int)Math.Min(per, count - done);
            if (from.ReadAtLeast(inBuf.AsSpan(0, m * size), m * size, throwOnEndOfStream: false) < m * size)
                throw new InfluenceSharpException($"{source}: truncated data");
            for (int i = 0; i < m; i++)
            {
                float v = (float)Element(inBuf.AsSpan(i * size, size), dtype);
                if (!float.IsFinite(v))
                {
                    long at = done + i;
                    throw new InfluenceSharpException($"{source}: example {at / exampleSize} holds a non-finite value ({v}) at position {at % exampleSize}");
                }
                outBuf[i] = v;
            }
            to.Write(MemoryMarshal.AsBytes(outBuf.AsSpan(0, m)));
            done += m;
        }
    }

    /// <summary>One pass through a float32 store refusing a non-finite value.</summary>
    static void CheckFinite(PixelStore store, string source)
    {
        int d = store.ImageSize / 4;
        int per = Math.Max(1, (1 << 20) / store.ImageSize);
        var buf = new float[(long)per * d];
        for (long start = 0; start < store.Count; start += per)
        {
            int n = (int)Math.Min(per, store.Count - start);
            store.ReadRange(start, n, MemoryMarshal.AsBytes(buf.AsSpan(0, n * d)));
            for (int i = 0; i < n * d; i++)
                if (!float.IsFinite(buf[i]))
                    throw new InfluenceSharpException($"{source}: example {start + i / d} holds a non-finite value ({buf[i]}) at position {i % d}");
        }
    }

    const string CacheFormat = "influencesharp-tensors-cache/1";

    /// <summary>The decoded copy of an input in the cache of the input file's folder (as the image
    /// folder's: beside it, or in the user's local application data), keyed on the file's content
    /// (SHA-256) and on what is decoded from it; written once (atomically) and read from there. Where no cache
    /// can be written the copy is made in memory.</summary>
    static PixelStore Cached(string file, string what, int record, long count, Action<Stream> write)
    {
        string key;
        using (var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            h.AppendData(Encoding.UTF8.GetBytes($"{CacheFormat}\n{what}\n{record}\n{count}\n"));
            using (var f = File.OpenRead(file)) h.AppendData(SHA256.HashData(f));
            key = System.Convert.ToHexStringLower(h.GetHashAndReset())[..32];
        }
        string name = $"tensors-{key}.bin";
        var dirs = ImageFolderReader.CacheDirs(Path.GetDirectoryName(file)!).ToList();
        foreach (var d in dirs)
        {
            string p = Path.Combine(d, name);
            if (File.Exists(p) && new FileInfo(p).Length == (long)record * count) return new FilePixelStore(p, 0, record, record, count);
        }
        foreach (var d in dirs)
        {
            try
            {
                Directory.CreateDirectory(d);
                string target = Path.Combine(d, name);
                AtomicFile.Write(target, write);
                return new FilePixelStore(target, 0, record, record, count);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Not writable here: try the next place.
            }
        }
        using var ms = new MemoryStream();
        write(ms);
        return new ArrayPixelStore(ms.ToArray(), record);
    }

    static double Element(ReadOnlySpan<byte> s, string dtype) => dtype switch
    {
        "f2" => (double)BitConverter.ToHalf(s),
        "bf2" => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(s) << 16),
        "f4" => BinaryPrimitives.ReadSingleLittleEndian(s),
        "f8" => BinaryPrimitives.ReadDoubleLittleEndian(s),
        "i1" => (sbyte)s[0],
        "i2" => BinaryPrimitives.ReadInt16LittleEndian(s),
        "i4" => BinaryPrimitives.ReadInt32LittleEndian(s),
        "i8" => BinaryPrimitives.ReadInt64LittleEndian(s),
        "u1" or "b1" => s[0],
        "u2" => BinaryPrimitives.ReadUInt16LittleEndian(s),
        "u4" => BinaryPrimitives.ReadUInt32LittleEndian(s),
        "u8" => BinaryPrimitives.ReadUInt64LittleEndian(s),
        _ => throw new InvalidOperationException(dtype),
    };

    static int[] Labels(NpyArray a)
    {
        var values = new double[a.Count];
        for (long i = 0; i < values.LongLength; i++) values[i] = a[i];
        return Labels(values, a.Shape, a.Name);
    }

    /// <summary>Labels of a safetensors file, read from their place in it.</summary>
    static int[] Labels(Located t)
    {
        int size = t.ElementSize;
        long count = t.Count;
        if (count * size > int.MaxValue) throw new InfluenceSharpException($"{t.Source}: labels too large");
        var bytes = new byte[count * size];
        using (var fs = File.OpenRead(t.File))
        {
            fs.Position = t.Offset;
            fs.ReadExactly(bytes);
        }
        var v = new double[count];
        for (long i = 0; i < count; i++) v[i] = Element(bytes.AsSpan((int)(i * size), size), t.Dtype);
        return Labels(v, t.Shape, t.Source);
    }

    static int[] Labels(double[] v, long[] shape, string name)
    {
        if (shape.Length != 1 && !(shape.Length == 2 && shape[1] == 1))
            throw new InfluenceSharpException($"{name}: labels are [{string.Join(",", shape)}]; expected [N] class indices");
        var y = new int[v.Length];
        for (int i = 0; i < v.Length; i++)
        {
            if (!(v[i] >= 0 && v[i] < 1_000_000 && v[i] == Math.Floor(v[i])))
                throw new InfluenceSharpException($"{name}: label {v[i].ToString(CultureInfo.InvariantCulture)} at index {i} is not a class index (an integer 0..K-1)");
            y[i] = (int)v[i];
        }
        return y;
    }

    [GeneratedRegex(@"^[<|](f[248]|i[1248]|u[1248])$")] private static partial Regex NpyDtypeRe();
}

/// <summary>tensors:FILE — .safetensors, .npz or X.npy,y.npy (see <see cref="TensorFileReader"/>).</summary>
public sealed class TensorsDataReader : DataReader
{
    public override string Prefix => "tensors";
    public override string Usage => "tensors:FILE";
    public override int Order => 30;
    public override IReadOnlyList<string> Keys => new[] { "x", "y", "test", "test-fraction", "split-seed" };
    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress) => TensorFileReader.Load(spec);
}
