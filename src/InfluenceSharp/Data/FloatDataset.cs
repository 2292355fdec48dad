using System.Runtime.InteropServices;
using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>A classification data set of float32 inputs, given to the model exactly as stored (no
/// normalisation): images [N, C, H, W] or [N, H, W] (one channel), or flat feature vectors [N, D]
/// (tabular data). Made by the tensors: and csv: readers.</summary>
public sealed class FloatDataset : LabeledDataset
{
    /// <summary>Values are N x (product of <paramref name="exampleShape"/>), example-major; the
    /// example shape is [D] (flat), [H, W] or [C, H, W].</summary>
    public FloatDataset(string name, float[] values, int[] exampleShape, int[] labels, int numClasses, IReadOnlyList<string>? classNames = null)
        : base(name, labels, numClasses, classNames)
    {
        if (exampleShape.Length is < 1 or > 3 || exampleShape.Any(d => d < 1))
            throw new ArgumentException($"{name}: example shape [{string.Join(",", exampleShape)}] is not [D], [H, W] or [C, H, W]");
        ExampleShape = exampleShape;
        ExampleSize = exampleShape.Aggregate(1, (a, b) => checked(a * b));
        if (values.LongLength != (long)labels.Length * ExampleSize)
            throw new ArgumentException($"{name}: {values.LongLength} values do not hold {labels.Length} examples of [{string.Join(",", exampleShape)}]");
        Values = values;
    }

    public float[] Values { get; }
    public int[] ExampleShape { get; }
    public int ExampleSize { get; }
    public override bool IsFlat => ExampleShape.Length == 1;
    public override int Channels => ExampleShape.Length == 3 ? ExampleShape[0] : 1;
    public override int Height => ExampleShape.Length == 1 ? 1 : ExampleShape[^2];
    public override int Width => ExampleShape[^1];

    public override FloatDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        var v = new float[(long)indices.Count * ExampleSize];
        var y = new int[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            Array.Copy(Values, (long)indices[i] * ExampleSize, v, (long)i * ExampleSize, ExampleSize);
            y[i] = Labels[indices[i]];
        }
        return KeepSources(new FloatDataset(name ?? Name, v, ExampleShape, y, NumClasses, ClassNames), indices);
    }

    public override FloatDataset WithLabels(int[] labels, string? name = null)
    {
        if (labels.Length != Count) throw new ArgumentException("label count differs from example count");
        return KeepSources(new FloatDataset(name ?? Name, Values, ExampleShape, labels, NumClasses, ClassNames), null);
    }

    public FloatDataset WithClassNames(IReadOnlyList<string>? classNames) => KeepSources(new FloatDataset(Name, Values, ExampleShape, Labels, NumClasses, classNames), null);

    /// <summary>The stored values [B, C, H, W] (flat data: [B, D]) for the given indices.</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
    {
        var v = new float[(long)indices.Length * ExampleSize];
        for (int i = 0; i < indices.Length; i++) Array.Copy(Values, (long)indices[i] * ExampleSize, v, (long)i * ExampleSize, ExampleSize);
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
        h.AppendData(MemoryMarshal.AsBytes(Values.AsSpan()));
        h.AppendData(MemoryMarshal.AsBytes(Labels.AsSpan()));
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }

    /// <summary>The example's values scaled to 0..255 by its own minimum and maximum (all-equal
    /// values are mid-grey); a 1- or 3-channel C x H x W image (other channel counts show channel 0).</summary>
    public override byte[] DisplayPixels(int index)
    {
        int size = ExampleSize, shown = Channels is 1 or 3 ? size : Height * Width;
        var src = Values.AsSpan((int)((long)index * size), shown);
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
