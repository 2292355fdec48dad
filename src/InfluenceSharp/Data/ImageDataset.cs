using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>An image classification dataset: uint8 pixels [N, C, H, W] and int labels. The pixels
/// live in a <see cref="PixelStore"/> (a managed array, or a file read image by image for data that need
/// not fit in memory); a subset is a view of the same store through a list of its rows (no pixel is
/// copied). Immutable; subsets and relabelled copies are new datasets.</summary>
public sealed class ImageDataset : LabeledDataset
{
    public ImageDataset(string name, byte[] pixels, int[] labels, int channels, int height, int width, int numClasses,
        IReadOnlyList<string>? classNames = null)
        : this(name, ArrayStore(name, pixels, labels.Length, channels, height, width), null, labels, channels, height, width, numClasses, classNames)
    {
    }

    /// <summary>Images from <paramref name="store"/>: example i is the store's image
    /// <c>rows[i]</c> (or image i when <paramref name="rows"/> is null).</summary>
    public ImageDataset(string name, PixelStore store, int[]? rows, int[] labels, int channels, int height, int width, int numClasses,
        IReadOnlyList<string>? classNames = null) : base(name, labels, numClasses, classNames)
    {
        if (store.ImageSize != channels * height * width)
            throw new ArgumentException($"{name}: the store's images are {store.ImageSize} bytes, not {channels}x{height}x{width}");
        if (rows is null && store.Count != labels.Length)
            throw new ArgumentException($"{name}: {store.Count} images for {labels.Length} labels");
        if (rows is not null)
        {
            if (rows.Length != labels.Length) throw new ArgumentException($"{name}: {rows.Length} rows for {labels.Length} labels");
            foreach (var r in rows)
                if ((ulong)r >= (ulong)store.Count) throw new ArgumentException($"{name}: row {r} outside the store's {store.Count} images");
        }
        Store = store; this.rows = rows;
        Channels = channels; Height = height; Width = width;
    }

    static ArrayPixelStore ArrayStore(string name, byte[] pixels, int count, int channels, int height, int width)
    {
        if (pixels.LongLength != (long)count * channels * height * width)
            throw new ArgumentException($"{name}: {pixels.LongLength} pixel bytes do not hold {count} images of {channels}x{height}x{width}");
        return new ArrayPixelStore(pixels, Math.Max(1, channels * height * width));
    }

    /// <summary>Where the pixels are (shared by subsets and relabelled copies).</summary>
    public PixelStore Store { get; }

    /// <summary>The store's image of each example, or null when example i is image i.</summary>
    public IReadOnlyList<int>? Rows => rows;
    readonly int[]? rows;

    /// <summary>The store's image index of example <paramref name="index"/>.</summary>
    public int Row(int index) => rows is null ? index : rows[index];

    /// <summary>Every pixel in one array [N, C, H, W]: for small data and tests. The array is the
    /// store's own when the data is one whole in-memory array; otherwise a copy of every image
    /// (use <see cref="ReadImage"/> or <see cref="Inputs"/> for large data).</summary>
    public byte[] Pixels
    {
        get
        {
            if (Rows is null && Store is ArrayPixelStore a) return a.Pixels;
            var px = new byte[(long)Count * ImageSize];
            for (int i = 0; i < Count; i++) ReadImage(i, px.AsSpan().Slice(checked(i * ImageSize), ImageSize));
            return px;
        }
    }

    /// <summary>Copies example <paramref name="index"/>'s pixels (C x H x W bytes) into <paramref name="destination"/>.</summary>
    public void ReadImage(int index, Span<byte> destination) => Store.Read(Row(index), destination);

    public override int Channels { get; }
    public override int Height { get; }
    public override int Width { get; }
    public int ImageSize => Channels * Height * Width;

    /// <summary>Per-channel mean and standard deviation used to normalise inputs.</summary>
    public (float[] Mean, float[] Std) Normalization => Channels == 3
        ? (new[] { 0.4914f, 0.4822f, 0.4465f }, new[] { 0.2470f, 0.2435f, 0.2616f })
        : (new[] { 0.2860f }, new[] { 0.3530f });

    /// <summary>A view of the examples at <paramref name="indices"/> (no pixel is copied).</summary>
    public override ImageDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        var rows = new int[indices.Count];
        var y = new int[indices.Count];
        for (int i = 0; i < indices.Count; i++)
        {
            if ((uint)indices[i] >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(indices), $"index {indices[i]} outside {Name}'s {Count} examples");
            rows[i] = Row(indices[i]);
            y[i] = Labels[indices[i]];
        }
        return KeepSources(new ImageDataset(name ?? Name, Store, rows, y, Channels, Height, Width, NumClasses, ClassNames), indices);
    }

    public override ImageDataset WithLabels(int[] labels, string? name = null)
    {
        if (labels.Length != Count) throw new ArgumentException("label count differs from image count");
        return KeepSources(new ImageDataset(name ?? Name, Store, rows, labels, Channels, Height, Width, NumClasses, ClassNames), null);
    }

    /// <summary>Normalised float32 inputs [B, C, H, W] for the given indices.</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
    {
        var px = new byte[indices.Length * ImageSize];
        Gather(indices, px);
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
        // Streamed in blocks of images, in example order: the same hash as of one array of every pixel.
        var block = new byte[Math.Max(1, (1 << 20) / Math.Max(1, ImageSize)) * ImageSize];
        int per = block.Length / Math.Max(1, ImageSize);
        for (int start = 0; start < Count; start += per)
        {
            int n = Math.Min(per, Count - start);
            Gather(Enumerable.Range(start, n).ToArray(), block);
            h.AppendData(block, 0, n * ImageSize);
        }
        var lb = new byte[Labels.Length * 4];
        Buffer.BlockCopy(Labels, 0, lb, 0, lb.Length);
        h.AppendData(lb);
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }

    /// <summary>A data set with the same pixels and labels and these class names.</summary>
    public ImageDataset WithClassNames(IReadOnlyList<string>? classNames) =>
        KeepSources(new ImageDataset(Name, Store, rows, Labels, Channels, Height, Width, NumClasses, classNames), null);

    public override byte[] DisplayPixels(int index)
    {
        var px = new byte[ImageSize];
        ReadImage(index, px);
        return px;
    }

    /// <summary>The pixels of <paramref name="indices"/>, image after image, into <paramref name="destination"/>;
    /// runs of consecutive store images are read in one piece.</summary>
    void Gather(ReadOnlySpan<int> indices, Span<byte> destination)
    {
        for (int i = 0; i < indices.Length;)
        {
            long first = Row(indices[i]);
            int run = 1;
            while (i + run < indices.Length && Row(indices[i + run]) == first + run) run++;
            Store.ReadRange(first, run, destination.Slice(i * ImageSize, run * ImageSize));
            i += run;
        }
    }
}
