using InfluenceSharp.Data;

namespace InfluenceSharp.Tests.Data;

/// <summary>Text data: documents, tokenizers, packing with per-token provenance, the reader, planted facts.</summary>
public class TextDataTests
{
    [Fact]
    public void DocumentsSplitByLinesOrBlankLines()
    {
        const string text = "first doc\nstill first\n\n\nsecond\r\n  \nthird\n";
        var blank = TextDocuments.Split(text, "/c.txt", TextDocumentSplit.Blank);
        Assert.Equal(new[] { "first doc\nstill first", "second", "third" }, blank.Select(d => d.Text));
        Assert.Equal(new[] { 1, 5, 7 }, blank.Select(d => d.Line));
        var lines = TextDocuments.Split(text, "/c.txt", TextDocumentSplit.Lines);
        Assert.Equal(new[] { "first doc", "still first", "second", "third" }, lines.Select(d => d.Text));
        Assert.Equal("c.txt line 5", lines[2].Where);
    }

    [Fact]
    public void ByteTokenizerSpansCoverWholeCharacters()
    {
        var tok = new ByteTokenizer();
        const string s = "aé€😀b";
        var tokens = tok.Encode(s);
        Assert.Equal(1 + 2 + 3 + 4 + 1, tokens.Count);
        Assert.Equal(s, tok.Decode(tokens.Select(t => t.Id)));
        // é: two bytes spanning char 1; 😀: four bytes spanning chars 3..4 (a surrogate pair).
        Assert.Equal(new[] { (1, 1), (1, 1) }, tokens.Skip(1).Take(2).Select(t => (t.Start, t.Length)));
        Assert.All(tokens.Skip(6).Take(4), t => Assert.Equal((3, 2), (t.Start, t.Length)));
        Assert.Equal((5, 1), (tokens[^1].Start, tokens[^1].Length));
    }

    [Fact]
    public void Gpt2TokenizerRoundTripsWithSpans()
    {
        var tok = TextTokenizer.Create("gpt2");
        const string s = "The capital of Veloria is Tarn.";
        var tokens = tok.Encode(s);
        Assert.Contains(tokens, t => s.Substring(t.Start, t.Length) == " is");
        Assert.Equal(s, string.Concat(tokens.Select(t => s.Substring(t.Start, t.Length))));
        Assert.Equal(s, tok.Decode(tokens.Select(t => t.Id)));
        Assert.Equal(464, tokens[0].Id);   // "The" in GPT-2's vocabulary
        Assert.Equal(50256, tok.EndOfText);
    }

    [Fact]
    public void StreamPackingShiftsTargetsAndRemembersDocumentSpans()
    {
        var docs = new[] { new TextDocument("abcde", "x"), new TextDocument("fg", "x"), new TextDocument("hijkl", "x") };
        var ds = TextDataset.Pack("t", docs, new ByteTokenizer(), 4);
        // Stream: E a b c d e E f g E h i j k l (15 tokens) -> windows of 5 starting at 0, 4, 8, 12.
        Assert.Equal(4, ds.Count);
        var x = ds.Inputs(new[] { 0, 1, 2, 3 }).data<long>().ToArray();
        var y = ds.Targets(new[] { 0, 1, 2, 3 }).data<long>().ToArray();
        Assert.Equal(new long[] { 256, 'a', 'b', 'c' }, x[..4]);
        Assert.Equal(new long[] { 'a', 'b', 'c', 'd' }, y[..4]);
        Assert.Equal(new long[] { 'd', 'e', 256, 'f' }, x[4..8]);
        Assert.Equal(new long[] { 'e', 256, 'f', 'g' }, y[4..8]);
        // Last window: j k l then padding (inputs end-of-text, targets ignored).
        Assert.Equal(new long[] { 'j', 'k', 'l', 256 }, x[12..16]);
        Assert.Equal(new long[] { 'k', 'l', TextDataset.Ignored, TextDataset.Ignored }, y[12..16]);
        Assert.Equal((int)'g', ds.Token(1, 4).Id);
        Assert.Equal((1, 1, 1), (ds.Token(1, 4).Document, ds.Token(1, 4).Start, ds.Token(1, 4).Length));
        Assert.Equal(-1, ds.Token(1, 2).Document);              // end-of-text belongs to no document
        Assert.Equal("g", ds.TargetText(1, 3));
        Assert.Equal(new[] { 0, 1 }, ds.DocumentsOf(1));
        Assert.Equal(new[] { 2 }, ds.DocumentsOf(3));
        Assert.True(ds.IsScored(3, 1));
        Assert.False(ds.IsScored(3, 2));
    }

    [Fact]
    public void DocumentPackingGivesEachDocumentItsOwnSequences()
    {
        var docs = new[] { new TextDocument("abcdefg", "x"), new TextDocument("hi", "x") };
        var ds = TextDataset.Pack("t", docs, new ByteTokenizer(), 4, TextPacking.Documents);
        // E a b c d | d e f g ; E h i (padded)
        Assert.Equal(3, ds.Count);
        Assert.Equal(new[] { 0 }, ds.DocumentsOf(0));
        Assert.Equal(new[] { 0 }, ds.DocumentsOf(1));
        Assert.Equal(new[] { 1 }, ds.DocumentsOf(2));
        Assert.Equal(new long[] { 'e', 'f', 'g', TextDataset.Ignored }, ds.Targets(new[] { 1 }).data<long>().ToArray());
        Assert.Equal(new long[] { 'h', 'i', TextDataset.Ignored, TextDataset.Ignored }, ds.Targets(new[] { 2 }).data<long>().ToArray());
        var sub = ds.Subset(new[] { 2, 0 });
        Assert.Equal(new[] { 1 }, sub.DocumentsOf(0));
        Assert.NotEqual(ds.Fingerprint(), sub.Fingerprint());
    }

    [Fact]
    public void PromptCompletionScoresOnlyTheCompletion()
    {
        var q = TextDataset.PromptCompletions(new ByteTokenizer(), 12, new[] { ("ab c", " de") });
        var y = q.Targets(new[] { 0 }).data<long>().ToArray();
        // E a b ' ' c ' ' d e: targets of positions 0..3 (the prompt's) are ignored.
        Assert.Equal(new long[] { -100, -100, -100, -100, ' ', 'd', 'e', -100 }, y[..8]);
        Assert.Equal("d", q.TargetText(0, 5));
        Assert.Throws<InfluenceSharpException>(() => TextDataset.PromptCompletions(new ByteTokenizer(), 4, new[] { ("abcd", "e") }));
    }

    [Fact]
    public void ReaderLoadsFilesWithOptionsAndNamesErrors()
    {
        var dir = Directory.CreateTempSubdirectory("text-reader");
        try
        {
            var a = Path.Combine(dir.FullName, "a.txt");
            var b = Path.Combine(dir.FullName, "b.txt");
            File.WriteAllText(a, string.Join("\n", Enumerable.Range(0, 8).Select(i => $"line {i} of a")));
            File.WriteAllText(b, "one\n\ntwo\n");
            var split = DataSource.Load($"text:{a},{b}?docs=lines&tokenizer=byte&seq=16&pack=docs&test-fraction=0.2");
            var train = Assert.IsType<TextDataset>(split.Train);
            var test = Assert.IsType<TextDataset>(split.Test);
            Assert.Equal(8, train.Documents.Count);
            Assert.Equal(2, test.Documents.Count);
            Assert.Equal(16, train.SequenceLength);
            Assert.Equal(257, train.NumClasses);
            Assert.Contains("tokenizer=byte", split.Source);
            // The recorded source rebuilds the same data.
            Assert.Equal(train.Fingerprint(), DataSource.Load(split.Source).Train.Fingerprint());
            var ex = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"text:{a}?docs=pages"));
            Assert.Contains("docs=pages", ex.Message);
            ex = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"text:{dir.FullName}/missing.txt"));
            Assert.Contains("missing.txt", ex.Message);
            File.WriteAllBytes(b, new byte[] { 0x61, 0xff, 0x0a });
            ex = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"text:{b}?docs=lines"));
            Assert.Contains("UTF-8", ex.Message);
        }
        finally { dir.Delete(true); }
    }

    [Fact]
    public void PlantedFactsAppearInExactlyOneDocument()
    {
        var corpus = TextFacts.Generate(12, 30, 5);
        Assert.Equal(42, corpus.Documents.Count);
        Assert.Equal(12, corpus.Facts.Select(f => f.Subject).Distinct().Count());
        foreach (var f in corpus.Facts)
        {
            var sentence = $"The capital of {f.Subject} is {f.Answer}.";
            Assert.Equal(new[] { f.Document }, corpus.Documents.Select((d, i) => (d, i)).Where(t => t.d.Text.Contains(sentence)).Select(t => t.i));
            Assert.Equal(new[] { f.Document }, corpus.Documents.Select((d, i) => (d, i)).Where(t => t.d.Text.Contains(f.Answer)).Select(t => t.i));
            Assert.Equal(sentence, f.Prompt + f.Completion);
        }
        // The subjects are also named in documents without the fact.
        Assert.True(corpus.Facts.Count(f => corpus.Documents.Count(d => d.Text.Contains(f.Subject)) > 1) >= 6);
        Assert.Equal(corpus.ToText(), TextFacts.Generate(12, 30, 5).ToText());
        Assert.Equal(TextFacts.Default.Documents.Count, ((TextDataset)DataSource.Load("text:planted-facts?tokenizer=byte").Train).Documents.Count
            + ((TextDataset)DataSource.Load("text:planted-facts?tokenizer=byte").Test).Documents.Count);
    }
}
