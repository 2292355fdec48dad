using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>An in-memory image classification dataset: uint8 pixels [N, C, H, W] and int labels.
/// Immutable; subsets and relabelled copies are new datasets.</summary>
public sealed class ImageDataset : LabeledDataset
{
    public ImageDataset(string name, byte[] pixels, int[] labels, int channels, int height, int width, int numClasses,
        IReadOnlyList<string>? classNames = null) : base(name, labels, numClasses, classNames)
    {
        if (pixels.LongLength != (long)labels.Length * channels * height * width)
            throw new ArgumentException($"{name}: {pixels.LongLength} pixel bytes do not hold {labels.Length} images of {channels}x{height}x{width}");
        Pixels = pixels;
        Channels = channels; Height = height; Width = width;
    }

    public byte[] Pixels { get; }
    public override int Channels { get; }
    public override int Height { get; }
    public override int Width { get; }
    public int ImageSize => Channels * Height * Width;

    /// <summary>Per-channel mean and standard deviation used to normalise inputs.</summary>
    public (float[] Mean, float[] Std) Normalization => Channels == 3
        ? (new[] { 0.4914f, 0.4822f, 0.4465f }, new[] { 0.2470f, 0.2435f, 0.2616f })
        : (new[] { 0.2860f }, new[] { 0.3530f });

    public override ImageDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        var px = new byte[indices.Count * ImageSize];
        var y = new int[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            Buffer.BlockCopy(Pixels, indices[i] * ImageSize, px, i * ImageSize, ImageSize);
            y[i] = Labels[indices[i]];
        }
        return KeepSources(new ImageDataset(name ?? Name, px, y, Channels, Height, Width, NumClasses, ClassNames), indices);
    }

    public override ImageDataset WithLabels(int[] labels, string? name = null)
    {
        if (labels.Length != Count) throw new ArgumentException("label count differs from image count");
        return KeepSources(new ImageDataset(name ?? Name, Pixels, labels, Channels, Height, Width, NumClasses, ClassNames), null);
    }

    /// <summary>Normalised float32 inputs [B, C, H, W] for the given indices.</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
    {
        var px = new byte[indices.Length * ImageSize];
        for (int i = 0; i < indices.Length; i++)
            Buffer.BlockCopy(Pixels, indices[i] * ImageSize, px, i * ImageSize, ImageSize);
        using var scope = NewDisposeScope();
        var (mean, std) = Normalization;
        // x = pixel · 1/(255·std) − mean/std, with tensor operands and an explicit Scalar only
        // (implicitly converted Scalars can be finalised while libtorch reads them).
        var scale = torch.tensor(std.Select(v => 1f / (255f * v)).ToArray()).reshape(1, Channels, 1, 1);
        var offset = torch.tensor(mean.Zip(std, (m, v) => -m / v).ToArray()).reshape(1, Channels, 1, 1);
        using var one = 1.0.ToScalar();
        var x = torch.tensor(px, new long[] { indices.Length, Channels, Height, Width }).to_type(ScalarType.Float32).mul_(scale).add_(offset, one);
        if (device is not null) x = x.to(device);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>Hash of pixels, labels and shape: identifies "the same training data" in manifests.</summary>
    public override string Fingerprint()
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(BitConverter.GetBytes(Count));
        h.AppendData(BitConverter.GetBytes(Channels)); h.AppendData(BitConverter.GetBytes(Height)); h.AppendData(BitConverter.GetBytes(Width));
        h.AppendData(Pixels);
        var lb = new byte[Labels.Length * 4];
        Buffer.BlockCopy(Labels, 0, lb, 0, lb.Length);
        h.AppendData(lb);
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }

    /// <summary>A data set with the same pixels and labels and these class names.</summary>
    public ImageDataset WithClassNames(IReadOnlyList<string>? classNames) =>
        KeepSources(new ImageDataset(Name, Pixels, Labels, Channels, Height, Width, NumClasses, classNames), null);

    public override byte[] DisplayPixels(int index) => Pixels.AsSpan(index * ImageSize, ImageSize).ToArray();
}
