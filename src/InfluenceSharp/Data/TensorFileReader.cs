using System.Globalization;
using System.IO.Compression;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

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
public static class TensorFileReader
{
    /// <summary>X as read: uint8 or float32 values of shape [N, ...].</summary>
    sealed record Inputs(string Source, long[] Shape, byte[]? Bytes, float[]? Floats);

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
            if (!xt.Shape.AsSpan(1).SequenceEqual(x.Shape.AsSpan(1)) || (xt.Bytes is null) != (x.Bytes is null))
                throw new InfluenceSharpException($"{xt.Source}: test inputs are [{string.Join(",", xt.Shape)}] {(xt.Bytes is null ? "float" : "uint8")} but training inputs (in {x.Source}) are [{string.Join(",", x.Shape)}] {(x.Bytes is null ? "float" : "uint8")}: the same shape per example and type are needed");
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
        if (x.Bytes is { } b && (shape.Length == 2 || (shape.Length == 3 && shape[0] is 1 or 3)))
            return shape.Length == 2 ? new ImageDataset(name, b, y, 1, shape[0], shape[1], numClasses)
                                     : new ImageDataset(name, b, y, shape[0], shape[1], shape[2], numClasses);
        var f = x.Floats ?? x.Bytes!.Select(v => (float)v).ToArray();
        return new FloatDataset(name, f, shape, y, numClasses);
    }

    /// <summary>Reads X and y (and X_test, y_test when <paramref name="wantTest"/> and present).</summary>
    static (Inputs X, int[] Y, Inputs? XTest, int[]? YTest) Read(string path, string xName, string yName, bool wantTest)
    {
        var parts = path.Split(',');
        if (parts.Length == 2)
        {
            if (!parts.All(p => p.EndsWith(".npy", StringComparison.OrdinalIgnoreCase)))
                throw new InfluenceSharpException($"tensors:{path}: a pair must be X.npy,y.npy");
            var xa = NpyArray.Parse(ReadFile(parts[0]), parts[0]);
            var ya = NpyArray.Parse(ReadFile(parts[1]), parts[1]);
            var (xi, yi) = Check(FromNpy(xa), Labels(ya), ya.Name);
            return (xi, yi, null, null);
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

    static (Inputs, int[], Inputs?, int[]?) ReadNpz(string path, string xName, string yName, bool wantTest)
    {
        var bytes = ReadFile(path);
        var arrays = new Dictionary<string, NpyArray>(StringComparer.Ordinal);
        try
        {
            using var zip = new ZipArchive(new MemoryStream(bytes), ZipArchiveMode.Read);
            foreach (var e in zip.Entries)
            {
                if (!e.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
                string key = e.FullName[..^4];
                if (key != xName && key != yName && key != xName + "_test" && key != yName + "_test") continue;
                using var s = e.Open();
                using var ms = new MemoryStream();
                s.CopyTo(ms);
                arrays[key] = NpyArray.Parse(ms.ToArray(), $"{path}:{e.FullName}");
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new InfluenceSharpException($"{path}: not a readable .npz (zip) archive: {e.Message}", e);
        }
        NpyArray Get(string k) => arrays.TryGetValue(k, out var a) ? a
            : throw new InfluenceSharpException($"{path}: has no array named '{k}' (name others with tensors:{path}?x=NAME&y=NAME)");
        var (x, y) = Check(FromNpy(Get(xName)), Labels(Get(yName)), $"{path}:{yName}");
        if (wantTest && arrays.ContainsKey(xName + "_test") != arrays.ContainsKey(yName + "_test"))
            throw new InfluenceSharpException($"{path}: has only one of {xName}_test and {yName}_test");
        if (wantTest && arrays.TryGetValue(xName + "_test", out var xt))
        {
            var (xti, yti) = Check(FromNpy(xt), Labels(arrays[yName + "_test"]), $"{path}:{yName}_test");
            return (x, y, xti, yti);
        }
        return (x, y, null, null);
    }

    static (Inputs, int[], Inputs?, int[]?) ReadSafeTensors(string path, string xName, string yName, bool wantTest)
    {
        using var f = SafeTensors.Load(path);
        Tensor Get(string k) => f.Tensors.TryGetValue(k, out var t) ? t
            : throw new InfluenceSharpException($"{path}: has no tensor named '{k}' (it has {string.Join(", ", f.Tensors.Keys.Take(8))}; name others with tensors:{path}?x=NAME&y=NAME)");
        var (x, y) = Check(FromTensor(Get(xName), $"{path}:{xName}"), Labels(Get(yName), $"{path}:{yName}"), $"{path}:{yName}");
        if (wantTest && f.Tensors.ContainsKey(xName + "_test") != f.Tensors.ContainsKey(yName + "_test"))
            throw new InfluenceSharpException($"{path}: has only one of {xName}_test and {yName}_test");
        if (wantTest && f.Tensors.TryGetValue(xName + "_test", out var xt))
        {
            var (xti, yti) = Check(FromTensor(xt, $"{path}:{xName}_test"), Labels(f.Tensors[yName + "_test"], $"{path}:{yName}_test"), $"{path}:{yName}_test");
            return (x, y, xti, yti);
        }
        return (x, y, null, null);
    }

    static (Inputs, int[]) Check(Inputs x, int[] y, string yName)
    {
        if (x.Shape.Length is < 2 or > 4)
            throw new InfluenceSharpException($"{x.Source}: inputs are [{string.Join(",", x.Shape)}]; expected [N, D], [N, H, W] or [N, C, H, W]");
        if (x.Shape.Skip(1).Any(d => d < 1) || x.Shape.Skip(1).Aggregate(1L, (a, b) => a * b) > int.MaxValue)
            throw new InfluenceSharpException($"{x.Source}: inputs [{string.Join(",", x.Shape)}] have an empty or too large example shape");
        if (x.Shape[0] != y.Length)
            throw new InfluenceSharpException($"{x.Source} has {x.Shape[0]} examples but {yName} has {y.Length} labels");
        if (y.Length == 0) throw new InfluenceSharpException($"{x.Source}: no examples");
        if (x.Floats is { } f)
        {
            long size = f.LongLength / y.Length;
            for (long i = 0; i < f.LongLength; i++)
                if (!float.IsFinite(f[i]))
                    throw new InfluenceSharpException($"{x.Source}: example {i / size} holds a non-finite value ({f[i]}) at position {i % size}");
        }
        return (x, y);
    }

    static Inputs FromNpy(NpyArray a)
    {
        if (a.IsUInt8) return new Inputs(a.Name, a.Shape, a.Data, null);
        var f = new float[a.Count];
        for (long i = 0; i < f.LongLength; i++) f[i] = (float)a[i];
        return new Inputs(a.Name, a.Shape, null, f);
    }

    static Inputs FromTensor(Tensor t, string name)
    {
        if (t.dtype == ScalarType.Byte) return new Inputs(name, t.shape, t.contiguous().bytes.ToArray(), null);
        if (t.dtype == ScalarType.Bool) throw new InfluenceSharpException($"{name}: boolean inputs; give numbers");
        using var f = t.to_type(ScalarType.Float32).contiguous();
        return new Inputs(name, t.shape, null, f.data<float>().ToArray());
    }

    static int[] Labels(NpyArray a)
    {
        var values = new double[a.Count];
        for (long i = 0; i < values.LongLength; i++) values[i] = a[i];
        return Labels(values, a.Shape, a.Name);
    }

    static int[] Labels(Tensor t, string name)
    {
        using var d = t.to_type(ScalarType.Float64).contiguous();
        return Labels(d.data<double>().ToArray(), t.shape, name);
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
