using InfluenceSharp.Data;

namespace InfluenceSharp.Tests.Data;

/// <summary>text-classes: tables (CSV, TSV) and class files (the fortune format), padding and
/// truncation, per-example sources, the recorded spec and refusals.</summary>
public class TextClassesDataTests
{
    [Fact]
    public void PercentSplitKeepsEntriesWithTheirFirstLine()
    {
        const string text = "first entry\n  two lines\n%\n\nsecond\n\nwith a blank inside\n%\n%\nthird\n";
        var docs = TextDocuments.Split(text, "/f", TextDocumentSplit.Percent);
        Assert.Equal(new[] { "first entry\n  two lines", "second\n\nwith a blank inside", "third" }, docs.Select(d => d.Text));
        Assert.Equal(new[] { 1, 5, 10 }, docs.Select(d => d.Line));
        Assert.Equal(TextDocumentSplit.Percent, TextDocuments.ParseSplit("percent", "x"));
    }

    [Fact]
    public void LanguageModelTextTakesPercentDocumentsToo()
    {
        using var dir = new TempDir();
        string path = dir.File("f.txt");
        File.WriteAllText(path, "one\n\nstill one\n%\ntwo\n%\nthree\n");
        var split = DataSource.Load($"text:{path}?docs=percent&tokenizer=byte&seq=8&test-fraction=0.34");
        Assert.Contains("docs=percent", split.Source);
        var docs = ((TextDataset)split.Train).Documents.Concat(((TextDataset)split.Test).Documents).Select(d => d.Text).Order().ToArray();
        Assert.Equal(new[] { "one\n\nstill one", "three", "two" }, docs);
    }

    [Fact]
    public void CsvTableNamesRowsAndLinesAndPadsOrCutsTokens()
    {
        using var dir = new TempDir();
        string path = dir.File("t.csv");
        // Row 2 spans two lines (a quoted line break), so row 3 starts on line 5.
        var rows = new List<string> { "id,text,topic", "1,\"hello, world\",greet", "2,\"multi\nline\",other", "3,abcdefghijkl,greet" };
        for (int i = 4; i <= 20; i++) rows.Add($"{i},t{i},{(i % 2 == 0 ? "greet" : "other")}");
        File.WriteAllText(path, string.Join("\n", rows) + "\n");
        var split = DataSource.Load($"text-classes:{path}?label=topic&tokenizer=byte&seq=8&test-fraction=0.25&split-seed=3");
        var all = split.Train.Count + split.Test.Count;
        Assert.Equal(20, all);
        var train = Assert.IsType<TextClassDataset>(split.Train);
        Assert.Equal(new[] { "greet", "other" }, train.ClassNames);
        Assert.Equal(258, train.Vocabulary);
        Assert.Contains("label=topic&text=text&tokenizer=byte&seq=8&test-fraction=0.25&split-seed=3", split.Source);
        // Find each text in either set and check its source and ids.
        (TextClassDataset D, int I) Find(string text)
        {
            foreach (var d in new[] { (TextClassDataset)split.Train, (TextClassDataset)split.Test })
                for (int i = 0; i < d.Count; i++) if (d.Texts[i] == text) return (d, i);
            throw new InvalidOperationException(text);
        }
        var (d2, i2) = Find("multi\nline");
        Assert.Equal("t.csv row 2 (line 3)", d2.SourceOf(i2)!.Text);
        Assert.Equal(1, d2.Labels[i2]);
        var (d3, i3) = Find("abcdefghijkl");
        Assert.Equal("t.csv row 3 (line 5)", d3.SourceOf(i3)!.Text);
        Assert.Equal(8, d3.TokenCount(i3));
        Assert.Equal("abcdefgh", d3.SeenText(i3));
        Assert.Equal(new long[] { 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h' }, d3.Inputs(new[] { i3 }).data<long>().ToArray());
        var (d1, i1) = Find("t5");
        Assert.Equal(new long[] { 't', '5', 257, 257, 257, 257, 257, 257 }, d1.Inputs(new[] { i1 }).data<long>().ToArray());
        Assert.Equal((int)'5', d1.Token(i1, 1).Id);
        Assert.Equal("5", d1.Token(i1, 1).Text);
        // The same spec gives the same data; the fingerprint covers the labels.
        var again = DataSource.Load(split.Source);
        Assert.Equal(split.Train.Fingerprint(), again.Train.Fingerprint());
        Assert.NotEqual(train.Fingerprint(), train.WithLabels(train.Labels.Select(l => 1 - l).ToArray()).Fingerprint());
    }

    [Fact]
    public void TsvTableAndIntegerLabels()
    {
        using var dir = new TempDir();
        string path = dir.File("t.tsv");
        File.WriteAllText(path, "label\ttext\n" + string.Join("\n", Enumerable.Range(0, 12).Select(i => $"{i % 3}\tsome, text {i}")) + "\n");
        var split = DataSource.Load($"text-classes:{path}?tokenizer=byte&seq=16");
        Assert.Equal(3, split.Train.NumClasses);
        Assert.Null(split.Train.ClassNames);
        var t = (TextClassDataset)split.Train;
        Assert.StartsWith("some, text ", t.Texts[0]);
        Assert.Matches(@"^t\.tsv row \d+ \(line \d+\)$", t.SourceOf(0)!.Text);
    }

    /// <summary>"01" is class 1; a TSV's last field may be empty and keeps its trailing spaces; a class
    /// index no model can take is refused naming the row.</summary>
    [Fact]
    public void TsvKeepsTrailingFieldsAndIntegerLabelsAreIndices()
    {
        using var dir = new TempDir();
        string path = dir.File("t.tsv");
        File.WriteAllText(path, "label\ttext\tnote\n" + string.Join("\n", Enumerable.Range(0, 12).Select(i => $"0{i % 3}\ttext {i}  \t")) + "\n");
        var split = DataSource.Load($"text-classes:{path}?tokenizer=byte&seq=16&test-fraction=0.25");
        Assert.Equal(3, split.Train.NumClasses);
        var t = (TextClassDataset)split.Train;
        Assert.EndsWith("  ", t.Texts[0]);
        Assert.Equal(Enumerable.Range(0, t.Count).Select(i => int.Parse(t.Texts[i].Trim().Split(' ')[1]) % 3), t.Labels);

        File.WriteAllText(path, "label\ttext\n0\ta\n1\tb\n2000000\tc\n");
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"text-classes:{path}?tokenizer=byte&seq=4"));
        Assert.Contains("row 3", e.Message);
        Assert.Contains("2000000", e.Message);
    }

    [Fact]
    public void ClassFilesInAFolderAreClassesOfFortuneEntries()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("f"));
        File.WriteAllText(dir.File("f/cats"), string.Join("\n%\n", Enumerable.Range(1, 6).Select(i => $"cat saying {i}\nsecond line")) + "\n%\n");
        File.WriteAllText(dir.File("f/dogs"), string.Join("\n%\n", Enumerable.Range(1, 9).Select(i => $"dog saying {i}")) + "\n");
        File.WriteAllText(dir.File("f/dogs.dat"), "binary index");
        File.WriteAllText(dir.File("f/.hidden"), "x");
        var split = DataSource.Load($"text-classes:{dir.File("f")}?tokenizer=byte&seq=12&per-class=5&test-fraction=0.2");
        Assert.Equal(new[] { "cats", "dogs" }, split.Train.ClassNames);
        Assert.Equal(10, split.Train.Count + split.Test.Count);
        Assert.Contains("docs=percent", split.Source);
        Assert.Contains("per-class=5", split.Source);
        var t = (TextClassDataset)split.Train;
        for (int i = 0; i < t.Count; i++)
        {
            var src = t.SourceOf(i)!;
            Assert.Equal(ExampleSourceKind.TextEntry, src.Kind);
            int entry = src.Number;
            string expected = t.Labels[i] == 0 ? $"cat saying {entry}\nsecond line" : $"dog saying {entry}";
            Assert.Equal(expected, t.Texts[i]);
            Assert.Equal(t.Labels[i] == 0 ? 3 * entry - 2 : 2 * entry - 1, src.Line);
            Assert.Equal($"{(t.Labels[i] == 0 ? "cats" : "dogs")} entry {entry} (line {src.Line})", src.Text);
        }
        // Files listed with commas: the same classes.
        var listed = DataSource.Load($"text-classes:{dir.File("f/cats")},{dir.File("f/dogs")}?tokenizer=byte&seq=12&per-class=5&test-fraction=0.2");
        Assert.Equal(split.Train.Fingerprint(), listed.Train.Fingerprint());
    }

    [Theory]
    [InlineData("label,words\nx,a\ny,b\n", "", "no text column 'text'")]
    [InlineData("label,text\nx,a\nx,b\n", "", "one class")]
    [InlineData("label,text\nx,a\ny,b\n", "&seq=0", "seq=0")]
    [InlineData("label,text\nx,a\ny,b\n", "&docs=percent", "docs= applies to class files")]
    [InlineData("label,text\nx,a\ny,b\n", "&per-class=1", "per-class=1")]
    [InlineData("label,text\n,a\ny,b\n", "", "line 2, column 'label': empty label")]
    [InlineData("label,text,text\nx,a,b\ny,b,c\n", "", "column 'text' appears twice")]
    [InlineData("label,label,text\nx,x,a\ny,y,b\n", "", "column 'label' appears twice")]
    [InlineData("label,text\nx,a\ny,b\n", "&text=label", "label and text columns are both 'label'")]
    public void RefusesBadTablesAndOptionsNamingThem(string csv, string options, string message)
    {
        using var dir = new TempDir();
        string path = dir.File("bad.csv");
        File.WriteAllText(path, csv);
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"text-classes:{path}?tokenizer=byte{options}"));
        Assert.Contains(message, e.Message);
    }
}
