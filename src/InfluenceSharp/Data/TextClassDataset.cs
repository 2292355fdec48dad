using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>
/// A text classification data set: one labelled text per example, tokenised and cut to
/// <see cref="SequenceLength"/> tokens (longer texts lose their end), shorter ones padded on the right
/// with <see cref="PadId"/> (the tokenizer's vocabulary size: an id of its own, which a classifier
/// masks). As a <see cref="LabeledDataset"/> its examples are flat rows of L token ids.
/// </summary>
public sealed class TextClassDataset : LabeledDataset
{
    readonly int[] ids;     // N × L, padded with PadId
    readonly int[] lengths; // tokens before the padding
    readonly int[][] starts, spans;

    TextClassDataset(string name, TextTokenizer tokenizer, int sequenceLength, int[] ids, int[] lengths, int[][] starts, int[][] spans,
        IReadOnlyList<string> texts, int[] labels, int numClasses, IReadOnlyList<string>? classNames)
        : base(name, labels, numClasses, classNames)
    {
        Tokenizer = tokenizer; SequenceLength = sequenceLength; Texts = texts;
        this.ids = ids; this.lengths = lengths; this.starts = starts; this.spans = spans;
    }

    /// <summary>Tokenises <paramref name="texts"/> (one per label).</summary>
    public static TextClassDataset Create(string name, IReadOnlyList<string> texts, int[] labels, int numClasses, IReadOnlyList<string>? classNames,
        TextTokenizer tokenizer, int sequenceLength)
    {
        if (sequenceLength < 1) throw new InfluenceSharpException($"{name}: sequence length {sequenceLength}: must be at least 1");
        if (texts.Count != labels.Length) throw new ArgumentException($"{name}: {texts.Count} texts for {labels.Length} labels");
        int n = texts.Count, l = sequenceLength, pad = tokenizer.VocabularySize;
        var ids = new int[n * l];
        Array.Fill(ids, pad);
        var lengths = new int[n];
        var starts = new int[n][];
        var spans = new int[n][];
        for (int i = 0; i < n; i++)
        {
            var tokens = tokenizer.Encode(texts[i]);
            int k = Math.Min(tokens.Count, l);
            lengths[i] = k;
            starts[i] = new int[k]; spans[i] = new int[k];
            for (int t = 0; t < k; t++) { ids[i * l + t] = tokens[t].Id; starts[i][t] = tokens[t].Start; spans[i][t] = tokens[t].Length; }
        }
        return new TextClassDataset(name, tokenizer, sequenceLength, ids, lengths, starts, spans, texts, labels, numClasses, classNames);
    }

    public TextTokenizer Tokenizer { get; }
    /// <summary>L: token positions per example.</summary>
    public int SequenceLength { get; }
    /// <summary>The padding id: one past the tokenizer's ids.</summary>
    public int PadId => Tokenizer.VocabularySize;
    /// <summary>Ids a model must embed: the tokenizer's and the padding id.</summary>
    public int Vocabulary => Tokenizer.VocabularySize + 1;
    /// <summary>Each example's whole text (before truncation).</summary>
    public IReadOnlyList<string> Texts { get; }

    public override int Channels => 1;
    public override int Height => 1;
    public override int Width => SequenceLength;
    public override bool IsFlat => true;

    /// <summary>Tokens of example <paramref name="index"/> that the model sees (at most L).</summary>
    public int TokenCount(int index) => lengths[index];

    /// <summary>Token <paramref name="position"/> of example <paramref name="index"/>: its id and its text.</summary>
    public (int Id, string Text) Token(int index, int position)
    {
        if ((uint)position >= (uint)lengths[index]) throw new ArgumentOutOfRangeException(nameof(position));
        return (ids[index * SequenceLength + position], Texts[index].Substring(starts[index][position], spans[index][position]));
    }

    /// <summary>The text the model sees of example <paramref name="index"/> (its first L tokens).</summary>
    public string SeenText(int index) => lengths[index] == 0 ? ""
        : Texts[index][..(starts[index][lengths[index] - 1] + spans[index][lengths[index] - 1])];

    /// <summary>Token ids [B, L] (int64), padding = <see cref="PadId"/>.</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
    {
        int l = SequenceLength;
        var v = new long[(long)indices.Length * l];
        for (int b = 0; b < indices.Length; b++)
            for (int t = 0; t < l; t++) v[(long)b * l + t] = ids[indices[b] * l + t];
        var r = torch.tensor(v, new long[] { indices.Length, l });
        return device is null ? r : r.to(device);
    }

    public override TextClassDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        int l = SequenceLength, n = indices.Count;
        var v = new int[n * l];
        for (int i = 0; i < n; i++) Array.Copy(ids, indices[i] * l, v, i * l, l);
        return KeepSources(new TextClassDataset(name ?? Name, Tokenizer, l, v, indices.Select(i => lengths[i]).ToArray(),
            indices.Select(i => starts[i]).ToArray(), indices.Select(i => spans[i]).ToArray(), indices.Select(i => Texts[i]).ToArray(),
            indices.Select(i => Labels[i]).ToArray(), NumClasses, ClassNames), indices);
    }

    public override TextClassDataset WithLabels(int[] labels, string? name = null)
    {
        if (labels.Length != Count) throw new ArgumentException("label count differs from example count");
        return KeepSources(new TextClassDataset(name ?? Name, Tokenizer, SequenceLength, ids, lengths, starts, spans, Texts, labels, NumClasses, ClassNames), null);
    }

    public override byte[] DisplayPixels(int index) =>
        throw new InfluenceSharpException($"{Name}: text data has no images to display");

    /// <summary>Hash of the tokenizer, the sequence length, the token ids and the labels.</summary>
    public override string Fingerprint()
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(System.Text.Encoding.UTF8.GetBytes($"text-classes:{Tokenizer.Name}:{SequenceLength}:"));
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(ids.AsSpan()));
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Labels.AsSpan()));
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }
}
