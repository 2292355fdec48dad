using System.Runtime.InteropServices;
using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>A classification data set of float32 inputs, given to the model exactly as stored (no
/// normalisation): images [N, C, H, W] or [N, H, W] (one channel), or flat feature vectors [N, D]
/// (tabular data). Made by the tensors: and csv: readers. The values live in a managed array (small
/// data, tests) or in a <see cref="PixelStore"/> whose records are one example's float32 values
/// (little-endian), e.g. a file read example by example; a subset is a view through a list of rows.</summary>
public sealed class FloatDataset : LabeledDataset
{
    /// <summary>Values are N x (product of <paramref name="exampleShape"/>), example-major; the
    /// example shape is [D] (flat), [H, W] or [C, H, W].</summary>
    public FloatDataset(string name, float[] values, int[] exampleShape, int[] labels, int numClasses, IReadOnlyList<string>? classNames = null)
        : this(name, values, null, null, exampleShape, labels, numClasses, classNames)
    {
        if (values.LongLength != (long)labels.Length * ExampleSize)
            throw new ArgumentException($"{name}: {values.LongLength} values do not hold {labels.Length} examples of [{string.Join(",", exampleShape)}]");
    }

    /// <summary>Values read from <paramref name="store"/>: example i is the store's record
    /// <c>rows[i]</c> (or record i when <paramref name="rows"/> is null), each record the example's
    /// float32 values (4 · example size bytes).</summary>
    public FloatDataset(string name, PixelStore store, int[]? rows, int[] exampleShape, int[] labels, int numClasses, IReadOnlyList<string>? classNames = null)
        : this(name, null, store, rows, exampleShape, labels, numClasses, classNames)
    {
        if (store.ImageSize != 4L * ExampleSize)
            throw new ArgumentException($"{name}: the store's records are {store.ImageSize} bytes, not {ExampleSize} float32 values");
        if (rows is null && store.Count != labels.Length)
            throw new ArgumentException($"{name}: {store.Count} records for {labels.Length} labels");
    }

    FloatDataset(string name, float[]? values, PixelStore? store, int[]? rows, int[] exampleShape, int[] labels, int numClasses, IReadOnlyList<string>? classNames)
        : base(name, labels, numClasses, classNames)
    {
        if (exampleShape.Length is < 1 or > 3 || exampleShape.Any(d => d < 1))
            throw new ArgumentException($"{name}: example shape [{string.Join(",", exampleShape)}] is not [D], [H, W] or [C, H, W]");
        ExampleShape = exampleShape;
        ExampleSize = exampleShape.Aggregate(1, (a, b) => checked(a * b));
        if (rows is not null)
        {
            if (rows.Length != labels.Length) throw new ArgumentException($"{name}: {rows.Length} rows for {labels.Length} labels");
            long have = values is not null ? values.LongLength / ExampleSize : store!.Count;
            foreach (var r in rows)
                if ((ulong)r >= (ulong)have) throw new ArgumentException($"{name}: row {r} outside the {have} stored examples");
        }
        this.values = values; this.store = store; this.rows = rows;
    }

    readonly float[]? values;
    readonly PixelStore? store;
    readonly int[]? rows;

    /// <summary>The store the values are read from; null when they are one managed array.</summary>
    public PixelStore? Store => store;

    /// <summary>Every value in one array (N x example size): for small data and tests. The array is
    /// the data set's own when it is one whole in-memory array; otherwise a copy.</summary>
    public float[] Values
    {
        get
        {
            if (values is not null && rows is null) return values;
            var v = new float[(long)Count * ExampleSize];
            for (int i = 0; i < Count; i++) ReadExample(i, v.AsSpan(checked(i * ExampleSize), ExampleSize));
            return v;
        }
    }

    public int[] ExampleShape { get; }
    public int ExampleSize { get; }
    public override bool IsFlat => ExampleShape.Length == 1;
    public override int Channels => ExampleShape.Length == 3 ? ExampleShape[0] : 1;
    public override int Height => ExampleShape.Length == 1 ? 1 : ExampleShape[^2];
    public override int Width => ExampleShape[^1];

    /// <summary>The stored example of each example, or null when example i is stored example i.</summary>
    public IReadOnlyList<int>? Rows => rows;

    int Row(int index) => rows is null ? index : rows[index];

    /// <summary>Copies example <paramref name="index"/>'s values into <paramref name="destination"/>.</summary>
    public void ReadExample(int index, Span<float> destination)
    {
        if ((uint)index >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(index), $"example {index} of {Count}");
        int r = Row(index);
        if (values is not null) values.AsSpan().Slice(checked(r * ExampleSize), ExampleSize).CopyTo(destination);
        else store!.Read(r, MemoryMarshal.AsBytes(destination[..ExampleSize]));
    }

    /// <summary>A view of the examples at <paramref name="indices"/> (no value is copied).</summary>
    public override FloatDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        var r = new int[indices.Count];
        var y = new int[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            if ((uint)indices[i] >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), $"index {indices[i]} outside {Name}'s {Count} examples");
            r[i] = Row(indices[i]);
            y[i] = Labels[indices[i]];
        }
        return KeepSources(new FloatDataset(name ?? Name, values, store, r, ExampleShape, y, NumClasses, ClassNames), indices);
    }

    public override FloatDataset WithLabels(int[] labels, string? name = null)
    {
        if (labels.Length != Count) throw new ArgumentException("label count differs from example count");
        return KeepSources(new FloatDataset(name ?? Name, values, store, rows, ExampleShape, labels, NumClasses, ClassNames), null);
    }

    public FloatDataset WithClassNames(IReadOnlyList<string>? classNames) =>
        KeepSources(new FloatDataset(Name, values, store, rows, ExampleShape, Labels, NumClasses, classNames), null);

    /// <summary>The stored values [B, C, H, W] (flat data: [B, D]) for the given indices.</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
    {
        var v = new float[(long)indices.Length * ExampleSize];
        for (int i = 0; i < indices.Length; i++) ReadExample(indices[i], v.AsSpan(checked(i * ExampleSize), ExampleSize));
        var shape = IsFlat ? new long[] { indices.Length, ExampleSize } : new long[] { indices.Length, Channels, Height, Width };
        var x = torch.tensor(v, shape);
        return device is null ? x : x.to(device);
    }

    /// <summary>Hash of a "float32" tag, the shape, the values and the labels (never equal to an
    /// <see cref="ImageDataset"/>'s fingerprint).</summary>
    public override string Fingerprint()
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData("float32"u8);
        h.AppendData(BitConverter.GetBytes(Count));
        h.AppendData(BitConverter.GetBytes(ExampleShape.Length));
        foreach (var d in ExampleShape) h.AppendData(BitConverter.GetBytes(d));
        // Streamed in blocks of examples, in example order: the same hash as of one array of every value.
        int per = Math.Max(1, (1 << 18) / ExampleSize);
        var block = new float[(long)per * ExampleSize];
        for (int start = 0; start < Count; start += per)
        {
            int n = Math.Min(per, Count - start);
            for (int i = 0; i < n; i++) ReadExample(start + i, block.AsSpan(i * ExampleSize, ExampleSize));
            h.AppendData(MemoryMarshal.AsBytes(block.AsSpan(0, n * ExampleSize)));
        }
        h.AppendData(MemoryMarshal.AsBytes(Labels.AsSpan()));
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }

    /// <summary>The example's values scaled to 0..255 by its own minimum and maximum (all-equal
    /// values are mid-grey); a 1- or 3-channel C x H x W image (other channel counts show channel 0).</summary>
    public override byte[] DisplayPixels(int index)
    {
        int size = ExampleSize, shown = Channels is 1 or 3 ? size : Height * Width;
        var all = new float[size];
        ReadExample(index, all);
        var src = all.AsSpan(0, shown);
        float lo = float.PositiveInfinity, hi = float.NegativeInfinity;
        foreach (var v in src) if (float.IsFinite(v)) { lo = Math.Min(lo, v); hi = Math.Max(hi, v); }
        var px = new byte[shown];
        for (int i = 0; i < shown; i++)
            px[i] = !(hi > lo) || !float.IsFinite(src[i]) ? (byte)128 : (byte)Math.Clamp(Math.Round(255.0 * (src[i] - lo) / (hi - lo)), 0, 255);
        return px;
    }

    /// <summary>The channel count <see cref="DisplayPixels"/> draws (1 or 3).</summary>
    public override int DisplayChannels => Channels is 1 or 3 ? Channels : 1;
}
