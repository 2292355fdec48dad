using System.Globalization;

namespace InfluenceSharp.Data;

/// <summary>
/// text:FILE[,FILE...] — UTF-8 text for language models. Documents are paragraphs separated by blank
/// lines (<c>docs=blank</c>, the default), single lines (<c>docs=lines</c>) or lines holding only '%'
/// (<c>docs=percent</c>, the fortune format); they are tokenised
/// (<c>tokenizer=gpt2</c>, the default, or <c>byte</c>) and packed into sequences of <c>seq</c>
/// tokens (default 64; <c>pack=stream</c>, the default, or <c>docs</c>: a sequence per document).
/// The test set is a seeded share of the documents (<c>test-fraction</c>, <c>split-seed</c>).
/// <c>text:planted-facts</c> is the built-in synthetic corpus of <see cref="TextFacts.Default"/>.
/// </summary>
public sealed class TextDataReader : DataReader
{
    /// <summary>The path that names the built-in planted-facts corpus.</summary>
    public const string PlantedFacts = "planted-facts";

    public override string Prefix => "text";
    public override string Usage => "text:FILE[,FILE...]";
    public override int Order => 50;
    public override IReadOnlyList<string> Keys => new[] { "docs", "tokenizer", "seq", "pack", "test-fraction", "split-seed" };

    public override void Validate(DataSpec spec, string text)
    {
        TextDocuments.ParseSplit(spec["docs"], $"--data {text}");
        Options(spec, text);
    }

    static (TextTokenizer Tokenizer, int Seq, TextPacking Pack) Options(DataSpec spec, string text)
    {
        var tok = spec["tokenizer"] ?? "gpt2";
        if (!TextTokenizer.Names.Contains(tok)) throw new InfluenceSharpException($"--data {text}: tokenizer={tok}: choose {string.Join(" or ", TextTokenizer.Names)}");
        int seq = 64;
        if (spec["seq"] is { } s && (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out seq) || seq < 1 || seq > 65536))
            throw new InfluenceSharpException($"--data {text}: seq={s}: a sequence length between 1 and 65536");
        var pack = spec["pack"] switch
        {
            null or "stream" => TextPacking.Stream,
            "docs" => TextPacking.Documents,
            var p => throw new InfluenceSharpException($"--data {text}: pack={p}: choose stream or docs"),
        };
        return (TextTokenizer.Create(tok), seq, pack);
    }

    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress)
    {
        string text = spec.ToString();
        var split = TextDocuments.ParseSplit(spec["docs"], $"--data {text}");
        var (tokenizer, seq, pack) = Options(spec, text);
        var source = spec;
        List<TextDocument> docs;
        if (spec.Path == PlantedFacts && !File.Exists(PlantedFacts)) docs = TextFacts.Default.Documents.ToList();
        else
        {
            var paths = (spec.Path ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Path.GetFullPath).ToArray();
            if (paths.Length == 0) throw new InfluenceSharpException($"--data {text}: no file named");
            docs = paths.SelectMany(p => TextDocuments.Read(p, split)).ToList();
            if (docs.Count == 0) throw new InfluenceSharpException($"--data {text}: the file(s) hold no documents");
            source = source with { Path = string.Join(",", paths) };
        }
        if (docs.Count < 2) throw new InfluenceSharpException($"--data {text}: {docs.Count} document; a train/test split needs at least two");
        var (train, test) = SplitDocuments(docs.Count, spec.TestFraction, spec.SplitSeed);
        var trainSet = TextDataset.Pack("text-train", train.Select(i => docs[i]).ToList(), tokenizer, seq, pack);
        var testSet = TextDataset.Pack("text-test", test.Select(i => docs[i]).ToList(), tokenizer, seq, pack);
        source = source.Set("docs", TextDocuments.Name(split)).Set("tokenizer", tokenizer.Name)
            .Set("seq", seq.ToString(CultureInfo.InvariantCulture)).Set("pack", pack == TextPacking.Stream ? "stream" : "docs")
            .Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        return new DataSplit(trainSet, testSet, source.ToString());
    }

    /// <summary>A seeded split of n documents: round(fraction × n) (at least 1, at most n − 1) go to the
    /// test set. Both lists ascend.</summary>
    public static (int[] Train, int[] Test) SplitDocuments(int n, double fraction, int seed)
    {
        var order = Enumerable.Range(0, n).ToArray();
        new Random(seed).Shuffle(order);
        int k = Math.Clamp((int)Math.Round(fraction * n, MidpointRounding.AwayFromZero), 1, n - 1);
        return (order.Skip(k).Order().ToArray(), order.Take(k).Order().ToArray());
    }
}
