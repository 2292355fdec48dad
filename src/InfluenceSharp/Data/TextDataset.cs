using System.Security.Cryptography;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>How documents become fixed-length sequences: <see cref="Stream"/> joins all documents
/// (each opened by end-of-text) into one token stream cut into consecutive sequences;
/// <see cref="Documents"/> starts every document in a sequence of its own (a long document fills
/// several), the rest padded, so that a sequence belongs to one document.</summary>
public enum TextPacking { Stream, Documents }

/// <summary>
/// A language-modelling data set: N sequences of L tokens. Sequence i is a window of L + 1 tokens;
/// its inputs are the first L, its targets the last L (the next token at every position), and every
/// token remembers the document it came from and its character span there (end-of-text tokens and
/// padding belong to no document: −1). Targets that are not scored (padding, the prompt of a
/// prompt/completion query) are −100, which the next-token loss ignores.
/// As a <see cref="LabeledDataset"/> it has one "class" per vocabulary id and no labels of its own
/// (all 0; the targets are the next tokens); <see cref="Width"/> is L.
/// </summary>
public sealed class TextDataset : LabeledDataset
{
    /// <summary>The target value the next-token loss ignores.</summary>
    public const int Ignored = -100;

    const int Pad = -1;

    readonly int[] window, document, start, length;
    readonly bool[] scored;

    TextDataset(string name, TextTokenizer tokenizer, int sequenceLength, int[] window, bool[] scored, int[] document, int[] start, int[] length, IReadOnlyList<TextDocument> documents)
        : base(name, new int[window.Length / (sequenceLength + 1)], tokenizer.VocabularySize, null)
    {
        Tokenizer = tokenizer; SequenceLength = sequenceLength; Documents = documents;
        this.window = window; this.scored = scored; this.document = document; this.start = start; this.length = length;
    }

    public TextTokenizer Tokenizer { get; }
    /// <summary>L: tokens per sequence.</summary>
    public int SequenceLength { get; }
    /// <summary>The documents the tokens point into.</summary>
    public IReadOnlyList<TextDocument> Documents { get; }

    public override int Channels => 1;
    public override int Height => 1;
    public override int Width => SequenceLength;
    public override bool IsFlat => true;

    int W => SequenceLength + 1;

    /// <summary>Packs <paramref name="documents"/> into sequences of <paramref name="sequenceLength"/> tokens.</summary>
    public static TextDataset Pack(string name, IReadOnlyList<TextDocument> documents, TextTokenizer tokenizer, int sequenceLength, TextPacking packing = TextPacking.Stream)
    {
        if (sequenceLength < 1) throw new InfluenceSharpException($"{name}: sequence length {sequenceLength}: must be at least 1");
        if (documents.Count == 0) throw new InfluenceSharpException($"{name}: no documents");
        int w = sequenceLength + 1;
        var tok = new List<int>(); var doc = new List<int>(); var st = new List<int>(); var len = new List<int>();
        void Add(int id, int d, int s, int l) { tok.Add(id); doc.Add(d); st.Add(s); len.Add(l); }
        void PadTo(int multiple) { while (tok.Count % multiple != 0) Add(Pad, -1, 0, 0); }
        for (int d = 0; d < documents.Count; d++)
        {
            var tokens = tokenizer.Encode(documents[d].Text);
            if (packing == TextPacking.Documents)
            {
                // Windows overlap by one token (the last target is the next window's first input).
                var ids = new List<(int Id, int Doc, int S, int L)> { (tokenizer.EndOfText, -1, 0, 0) };
                ids.AddRange(tokens.Select(t => (t.Id, d, t.Start, t.Length)));
                for (int s = 0; s < ids.Count - 1; s += sequenceLength)
                {
                    for (int k = s; k < Math.Min(s + w, ids.Count); k++) Add(ids[k].Id, ids[k].Doc, ids[k].S, ids[k].L);
                    PadTo(w);
                }
            }
            else
            {
                Add(tokenizer.EndOfText, -1, 0, 0);
                foreach (var t in tokens) Add(t.Id, d, t.Start, t.Length);
            }
        }
        if (packing == TextPacking.Stream)
        {
            // Consecutive windows share one token; the stream's end is padded.
            var (t0, d0, s0, l0) = (tok.ToArray(), doc.ToArray(), st.ToArray(), len.ToArray());
            tok.Clear(); doc.Clear(); st.Clear(); len.Clear();
            for (int s = 0; s < t0.Length - 1; s += sequenceLength)
            {
                for (int k = s; k < Math.Min(s + w, t0.Length); k++) Add(t0[k], d0[k], s0[k], l0[k]);
                PadTo(w);
            }
        }
        var window = tok.ToArray();
        var scored = new bool[window.Length];
        for (int i = 0; i < window.Length; i++) scored[i] = i % w != 0 && window[i] != Pad;
        return new TextDataset(name, tokenizer, sequenceLength, window, scored, doc.ToArray(), st.ToArray(), len.ToArray(), documents);
    }

    /// <summary>One sequence per (prompt, completion) pair: end-of-text, the prompt's tokens, then the
    /// completion's; only the completion's tokens are targets, so the next-token loss of a sequence
    /// is −log p(completion | prompt). Padded to <paramref name="sequenceLength"/> tokens. Document i
    /// of the result is prompt + completion of pair i (the completion's spans start after the prompt).</summary>
    public static TextDataset PromptCompletions(TextTokenizer tokenizer, int sequenceLength, IReadOnlyList<(string Prompt, string Completion)> pairs, string name = "queries")
    {
        int w = sequenceLength + 1;
        var tok = new List<int>(); var sc = new List<bool>(); var doc = new List<int>(); var st = new List<int>(); var len = new List<int>();
        var docs = new List<TextDocument>();
        for (int i = 0; i < pairs.Count; i++)
        {
            var (prompt, completion) = pairs[i];
            var text = prompt + completion;
            var p = tokenizer.Encode(prompt);
            var c = tokenizer.Encode(completion);
            if (c.Count == 0) throw new InfluenceSharpException($"--completion '{completion}': no tokens (empty completion)");
            if (1 + p.Count + c.Count > w)
                throw new InfluenceSharpException($"--prompt/--completion: {p.Count} + {c.Count} tokens do not fit the model's {sequenceLength}-token context");
            tok.Add(tokenizer.EndOfText); sc.Add(false); doc.Add(-1); st.Add(0); len.Add(0);
            foreach (var t in p) { tok.Add(t.Id); sc.Add(false); doc.Add(i); st.Add(t.Start); len.Add(t.Length); }
            foreach (var t in c) { tok.Add(t.Id); sc.Add(true); doc.Add(i); st.Add(prompt.Length + t.Start); len.Add(t.Length); }
            while (tok.Count % w != 0) { tok.Add(Pad); sc.Add(false); doc.Add(-1); st.Add(0); len.Add(0); }
            docs.Add(new TextDocument(text, "query"));
        }
        return new TextDataset(name, tokenizer, sequenceLength, tok.ToArray(), sc.ToArray(), doc.ToArray(), st.ToArray(), len.ToArray(), docs);
    }

    /// <summary>Token ids [B, L] (int64; padding is end-of-text).</summary>
    public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null) => Gather(indices, 0, device, targets: false);

    /// <summary>The next token at each position [B, L] (int64), <see cref="Ignored"/> where not scored.</summary>
    public override Tensor Targets(ReadOnlySpan<int> indices, Device? device = null) => Gather(indices, 1, device, targets: true);

    Tensor Gather(ReadOnlySpan<int> indices, int offset, Device? device, bool targets)
    {
        int l = SequenceLength;
        var v = new long[(long)indices.Length * l];
        for (int b = 0; b < indices.Length; b++)
            for (int t = 0; t < l; t++)
            {
                int k = indices[b] * W + t + offset;
                v[(long)b * l + t] = targets ? (scored[k] ? window[k] : Ignored) : (window[k] == Pad ? Tokenizer.EndOfText : window[k]);
            }
        var r = torch.tensor(v, new long[] { indices.Length, l });
        return device is null ? r : r.to(device);
    }

    /// <summary>The window's token at position <paramref name="position"/> (0..L; inputs are 0..L−1,
    /// the target of input position t is t + 1): id (−1 for padding), document (−1 for none), span.</summary>
    public (int Id, int Document, int Start, int Length) Token(int sequence, int position)
    {
        if ((uint)position > (uint)SequenceLength) throw new ArgumentOutOfRangeException(nameof(position));
        int k = sequence * W + position;
        return (window[k], document[k], start[k], length[k]);
    }

    /// <summary>Whether the target of input position <paramref name="position"/> counts in the loss.</summary>
    public bool IsScored(int sequence, int position) => scored[sequence * W + position + 1];

    /// <summary>The documents whose tokens are targets of sequence <paramref name="sequence"/>, ascending.</summary>
    public int[] DocumentsOf(int sequence)
    {
        var set = new SortedSet<int>();
        for (int t = 1; t <= SequenceLength; t++) { int d = document[sequence * W + t]; if (d >= 0 && scored[sequence * W + t]) set.Add(d); }
        return set.ToArray();
    }

    /// <summary>The text of the target token of input position <paramref name="position"/> ("" for
    /// end-of-text and padding).</summary>
    public string TargetText(int sequence, int position)
    {
        var (_, d, s, l) = Token(sequence, position + 1);
        return d < 0 ? "" : Documents[d].Text.Substring(s, l);
    }

    /// <summary>The sequence's input text, decoded.</summary>
    public string Text(int sequence) => Tokenizer.Decode(window.AsSpan(sequence * W, W).ToArray().Where(i => i != Pad));

    public override TextDataset Subset(IReadOnlyList<int> indices, string? name = null)
    {
        int w = W, n = indices.Count;
        var (wi, sc, d, s, l) = (new int[n * w], new bool[n * w], new int[n * w], new int[n * w], new int[n * w]);
        for (int i = 0; i < n; i++)
        {
            Array.Copy(window, indices[i] * w, wi, i * w, w); Array.Copy(scored, indices[i] * w, sc, i * w, w);
            Array.Copy(document, indices[i] * w, d, i * w, w); Array.Copy(start, indices[i] * w, s, i * w, w); Array.Copy(length, indices[i] * w, l, i * w, w);
        }
        return KeepSources(new TextDataset(name ?? Name, Tokenizer, SequenceLength, wi, sc, d, s, l, Documents), indices);
    }

    public override LabeledDataset WithLabels(int[] labels, string? name = null) =>
        throw new InfluenceSharpException($"{Name}: text data has no labels to change (its targets are the next tokens)");

    public override byte[] DisplayPixels(int index) =>
        throw new InfluenceSharpException($"{Name}: text data has no images to display");

    /// <summary>Hash of the tokenizer, the sequence length, the tokens and which targets are scored.</summary>
    public override string Fingerprint()
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        h.AppendData(System.Text.Encoding.UTF8.GetBytes($"text:{Tokenizer.Name}:{SequenceLength}:"));
        h.AppendData(System.Runtime.InteropServices.MemoryMarshal.AsBytes(window.AsSpan()));
        h.AppendData(scored.Select(b => b ? (byte)1 : (byte)0).ToArray());
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }
}
