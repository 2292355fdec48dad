using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>An in-memory classification data set: inputs of one shape per example, int labels in
/// [0, NumClasses) and, when known, a display name per class. The concrete kinds are
/// <see cref="ImageDataset"/> (uint8 pixels, normalised on the way to the model) and
/// <see cref="FloatDataset"/> (float32 values, given to the model as they are). Immutable: subsets
/// and relabelled copies are new data sets.</summary>
public abstract class LabeledDataset : IDataset
{
    protected LabeledDataset(string name, int[] labels, int numClasses, IReadOnlyList<string>? classNames)
    {
        for (int i = 0; i < labels.Length; i++)
            if (labels[i] < 0 || labels[i] >= numClasses)
                throw new InfluenceSharpException($"{name}: label {labels[i]} at index {i} is out of range [0, {numClasses})");
        if (classNames is not null && classNames.Count != numClasses)
            throw new ArgumentException($"{name}: {classNames.Count} class names for {numClasses} classes");
        Name = name; Labels = labels; NumClasses = numClasses; ClassNames = classNames;
    }

    public string Name { get; }
    public int[] Labels { get; }
    public int NumClasses { get; }
    /// <summary>A display name per class (folder names, CIFAR-10 names, ...); null when the source has
    /// none (then classes are shown by index, see <see cref="ClassName"/>). Not part of the fingerprint.</summary>
    public IReadOnlyList<string>? ClassNames { get; }
    public int Count => Labels.Length;

    /// <summary>The per-example shape as a model sees it: images are C x H x W; flat feature vectors
    /// of D values are 1 x 1 x D.</summary>
    public abstract int Channels { get; }
    public abstract int Height { get; }
    public abstract int Width { get; }

    /// <summary>True for flat feature vectors (tabular data), which convolutional models cannot take.</summary>
    public virtual bool IsFlat => false;

    /// <summary>The name of class <paramref name="c"/>, or its index when the data has no names.</summary>
    public string ClassName(int c) => ClassNames is { } n ? n[c] : c.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>The class names, or "0".."K-1" when the data has none.</summary>
    public IReadOnlyList<string> ClassNamesOrIndices => ClassNames ?? Enumerable.Range(0, NumClasses).Select(ClassName).ToArray();

    public abstract LabeledDataset Subset(IReadOnlyList<int> indices, string? name = null);
    public abstract LabeledDataset WithLabels(int[] labels, string? name = null);

    /// <summary>Float32 model inputs [B, C, H, W] (flat data: [B, D]) for the given indices.</summary>
    public abstract Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null);

    /// <summary>The labels [B] (int64); a data set whose targets are not one label per example overrides it.</summary>
    public virtual Tensor Targets(ReadOnlySpan<int> indices, Device? device = null)
    {
        var y = new long[indices.Length];
        for (int i = 0; i < y.Length; i++) y[i] = Labels[indices[i]];
        var t = torch.tensor(y);
        return device is null ? t : t.to(device);
    }

    /// <summary>Hash of inputs, labels and shape: identifies "the same training data" in manifests.</summary>
    public abstract string Fingerprint();

    /// <summary>Example <paramref name="index"/> as a displayable channel-major uint8 image (for figures):
    /// Channels x Height x Width bytes.</summary>
    public abstract byte[] DisplayPixels(int index);

    /// <summary>The channel count of <see cref="DisplayPixels"/>'s images (1 or 3).</summary>
    public virtual int DisplayChannels => Channels;

    /// <summary>Where each example came from (image file, CSV row, tensor or file index), or null when
    /// the reader did not say. Kept by <see cref="Subset"/> and <see cref="WithLabels"/>; not part of
    /// the fingerprint (moving the files does not change the data).</summary>
    public IReadOnlyList<ExampleSource>? Sources { get; private set; }

    /// <summary>The source of example <paramref name="index"/>, or null when unknown.</summary>
    public ExampleSource? SourceOf(int index) => Sources?[index];

    /// <summary>The same data set (sharing its storage) with these per-example sources.</summary>
    public LabeledDataset WithSources(IReadOnlyList<ExampleSource>? sources)
    {
        if (sources is not null && sources.Count != Count)
            throw new ArgumentException($"{Name}: {sources.Count} sources for {Count} examples");
        var copy = (LabeledDataset)MemberwiseClone();
        copy.Sources = sources;
        return copy;
    }

    /// <summary>Gives <paramref name="made"/>, a data set just made from this one by a subset
    /// (<paramref name="indices"/>) or a relabelling (null), this one's sources.</summary>
    protected T KeepSources<T>(T made, IReadOnlyList<int>? indices) where T : LabeledDataset
    {
        if (Sources is { } s) made.Sources = indices is null ? s : indices.Select(i => s[i]).ToArray();
        return made;
    }
}
