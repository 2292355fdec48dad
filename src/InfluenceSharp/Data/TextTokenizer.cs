using System.Text;
using Microsoft.ML.Tokenizers;

namespace InfluenceSharp.Data;

/// <summary>One token of a text: its id and the characters [Start, Start + Length) of the text it
/// came from (a byte of a multi-byte character spans that whole character).</summary>
public readonly record struct TextToken(int Id, int Start, int Length);

/// <summary>
/// Turns text into token ids and back. Two kinds: <c>byte</c> (one token per UTF-8 byte, 257 ids:
/// the 256 byte values and an end-of-text id; for tiny models) and <c>gpt2</c> (GPT-2's byte-level
/// BPE from Microsoft.ML.Tokenizers, 50,257 ids). Both have an end-of-text id, which separates and
/// opens documents in packed sequences.
/// </summary>
public abstract class TextTokenizer
{
    /// <summary>The tokenizer's name as a data spec writes it (byte, gpt2).</summary>
    public abstract string Name { get; }

    /// <summary>How many ids there are (the model's vocabulary size).</summary>
    public abstract int VocabularySize { get; }

    /// <summary>The end-of-text id.</summary>
    public abstract int EndOfText { get; }

    /// <summary>The tokens of <paramref name="text"/> with their character spans.</summary>
    public abstract IReadOnlyList<TextToken> Encode(string text);

    /// <summary>The text of these ids (end-of-text ids are left out).</summary>
    public abstract string Decode(IEnumerable<int> ids);

    /// <summary>The ids of <paramref name="text"/>.</summary>
    public int[] EncodeIds(string text) => Encode(text).Select(t => t.Id).ToArray();

    /// <summary>The tokenizer names <see cref="Create"/> knows.</summary>
    public static readonly string[] Names = { "byte", "gpt2" };

    /// <summary>The tokenizer of that name (byte or gpt2).</summary>
    public static TextTokenizer Create(string name) => name switch
    {
        "byte" => new ByteTokenizer(),
        "gpt2" => new Gpt2Tokenizer(),
        _ => throw new InfluenceSharpException($"tokenizer '{name}': unknown (choose {string.Join(", ", Names)})"),
    };

    public override string ToString() => Name;
}

/// <summary>One token per UTF-8 byte (ids 0..255) plus end-of-text (256).</summary>
public sealed class ByteTokenizer : TextTokenizer
{
    public override string Name => "byte";
    public override int VocabularySize => 257;
    public override int EndOfText => 256;

    public override IReadOnlyList<TextToken> Encode(string text)
    {
        var result = new List<TextToken>(text.Length);
        Span<byte> buffer = stackalloc byte[4];
        int pos = 0;
        foreach (var rune in text.EnumerateRunes())
        {
            int n = rune.EncodeToUtf8(buffer);
            for (int i = 0; i < n; i++) result.Add(new TextToken(buffer[i], pos, rune.Utf16SequenceLength));
            pos += rune.Utf16SequenceLength;
        }
        return result;
    }

    public override string Decode(IEnumerable<int> ids) =>
        Encoding.UTF8.GetString(ids.Where(i => i is >= 0 and < 256).Select(i => (byte)i).ToArray());
}

/// <summary>GPT-2's byte-level BPE (Microsoft.ML.Tokenizers with its GPT-2 data package).</summary>
public sealed class Gpt2Tokenizer : TextTokenizer
{
    static readonly Lazy<TiktokenTokenizer> shared = new(() => TiktokenTokenizer.CreateForModel("gpt2"));

    public override string Name => "gpt2";
    public override int VocabularySize => 50257;
    public override int EndOfText => 50256;

    public override IReadOnlyList<TextToken> Encode(string text)
    {
        var tokens = shared.Value.EncodeToTokens(text, out _, considerPreTokenization: true, considerNormalization: false);
        var result = new TextToken[tokens.Count];
        for (int i = 0; i < tokens.Count; i++)
        {
            var (start, length) = tokens[i].Offset.GetOffsetAndLength(text.Length);
            result[i] = new TextToken(tokens[i].Id, start, length);
        }
        return result;
    }

    public override string Decode(IEnumerable<int> ids) => shared.Value.Decode(ids.Where(i => i != EndOfText)) ?? "";
}
