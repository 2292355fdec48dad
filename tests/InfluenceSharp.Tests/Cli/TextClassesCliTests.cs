using System.Text.Json;
using System.Xml.Linq;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Tests.Cli;

/// <summary>Text classification end to end: train the GPT classifier on a generated corpus with planted
/// label flips, find the flips with detect-mislabeled (well above chance), name them by row and line,
/// explain a test text, and render texts (escaped) in the report. Also: --measure refused on a language-model run.</summary>
[Collection("cli")]
public class TextClassesCliTests
{
    const int CorpusSeed = 4711;

    /// <summary>Three topics, each text mostly words of its topic plus a few shared ones; every text ends
    /// in markup characters, to check the report's escaping.</summary>
    static string Corpus(string path, int perClass)
    {
        var rng = new Random(CorpusSeed);
        var topics = new Dictionary<string, string[]>
        {
            ["sport"] = "ball goal team match score coach league player".Split(' '),
            ["food"] = "bread soup cheese apple salt bake cook sugar".Split(' '),
            ["tech"] = "code disk byte chip screen cable linux kernel".Split(' '),
        };
        string[] shared = "the a of and to is".Split(' ');
        var lines = new List<string> { "label,text" };
        for (int i = 0; i < perClass; i++)
            foreach (var (name, words) in topics)
            {
                var text = string.Join(" ", Enumerable.Range(0, rng.Next(5, 10)).Select(_ => rng.NextDouble() < 0.75 ? words[rng.Next(words.Length)] : shared[rng.Next(shared.Length)]));
                text += " <b>&</b>";
                lines.Add($"{name},\"{text}\"");
            }
        File.WriteAllText(path, string.Join("\n", lines) + "\n");
        return path;
    }

    [Fact]
    public void DetectsPlantedLabelFlipsInTextsAndReportsTheTexts()
    {
        using var dir = new TempDir();
        string csv = Corpus(dir.File("topics.csv"), 50);
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", $"text-classes:{csv}?seq=12", "--model", "gpt", "--widths", "16,1,2", "--epochs", "12",
            "--lr", "0.05", "--batch-size", "8", "--weight-decay", "0", "--corrupt", "0.1", "--corrupt-seed", "3", "--seed", "1", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var opened = Run.Open(run);
        Assert.IsType<TextClassDataset>(opened.Data.Train);
        Assert.IsType<GptClassifier>(opened.Last.LoadModel());
        Assert.True(opened.Last.Info.Metrics!.TestAccuracy > 0.8, $"test accuracy {opened.Last.Info.Metrics.TestAccuracy}");

        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "tracin-last,ekfac-last", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")));
        foreach (var m in doc.RootElement.EnumerateArray())
        {
            // 12 of 120 flipped: chance finds 20% at 20% inspected and has AUC 0.5.
            double auc = m.GetProperty("roc_auc").GetDouble(), at20 = m.GetProperty("found_at").GetProperty("20%").GetDouble();
            Assert.True(auc > 0.8 && at20 >= 0.5, $"{m.GetProperty("method")}: ROC AUC {auc}, found at 20% {at20}");
            Assert.Matches(@"^topics\.csv row \d+ \(line \d+\)$", m.GetProperty("top_sources")[0].GetString());
        }
        var suspicious = InfluenceSharp.Data.CsvDataReader.ReadRecords(Path.Combine(run, "detect", "suspicious-tracin-last.csv"));
        Assert.Equal("text", suspicious[0].Fields[^1]);
        // The row and line name the file's row: its text is there.
        var train = (TextClassDataset)opened.Data.Train;
        var fileLines = File.ReadAllLines(csv);
        foreach (var (_, f) in suspicious.Skip(1).Take(5))
        {
            int index = int.Parse(f[1]);
            var src = train.SourceOf(index)!;
            Assert.Equal(f[6], src.Text);
            Assert.Contains(f[7], fileLines[src.Line - 1]);
            Assert.Equal(src.Number + 1, src.Line);   // one line per row under the header
        }
        Assert.False(File.Exists(Path.Combine(run, "detect", "suspicious-tracin-last.png")));

        r = CliRunner.Run("explain", "--run", run, "--query", "0,1", "--methods", "ekfac-last", "--top", "3", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        using var ex = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "explain", "explain-ekfac-last.json")));
        Assert.False(string.IsNullOrEmpty(ex.RootElement[0].GetProperty("text").GetString()));
        Assert.False(string.IsNullOrEmpty(ex.RootElement[0].GetProperty("proponents")[0].GetProperty("text").GetString()));

        r = CliRunner.Run("report", "--run", run);
        Assert.True(r.Code == 0, r.Err);
        string html = File.ReadAllText(Path.Combine(run, "report.html"));
        var page = XDocument.Parse(html);   // well formed despite the markup in the texts
        XNamespace x = "http://www.w3.org/1999/xhtml";
        var textCells = page.Descendants(x + "td").Where(td => (string?)td.Attribute("class") == "text").ToList();
        Assert.NotEmpty(textCells);
        Assert.DoesNotContain("<b>", html);
        Assert.Contains("&lt;b&gt;&amp;&lt;/b&gt;", html);
        Assert.EndsWith("<b>&</b>", textCells[0].Value);
        Assert.Contains("query test0", html);
    }

    [Fact]
    public void LanguageModelRunRefusesMeasureAndItsReportColoursTokens()
    {
        using var dir = new TempDir();
        string corpus = dir.File("corpus.txt");
        File.WriteAllText(corpus, string.Join("\n\n", TextFacts.Generate(4, 6, 2).Documents.Select(d => d.Text)));
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", $"text:{corpus}?tokenizer=byte&seq=24", "--model", "gpt", "--widths", "8,1,2", "--epochs", "1",
            "--batch-size", "8", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        foreach (var measure in new[] { "margin", "loss" })
        {
            r = CliRunner.Run("explain", "--run", run, "--prompt", "The", "--completion", " x", "--methods", "identity", "--measure", measure, "--quiet");
            Assert.Equal(2, r.Code);
            Assert.Contains($"--measure {measure}: does not apply to a run trained on text", r.Err);
        }
        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "identity", "--measure", "margin", "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("--measure margin: does not apply", r.Err);

        // Without --measure: the explanation lists per-token scores, which the report colours.
        r = CliRunner.Run("explain", "--run", run, "--prompt", "The", "--completion", " x", "--methods", "ekfac", "--top", "2", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("report", "--run", run);
        Assert.True(r.Code == 0, r.Err);
        var page = XDocument.Parse(File.ReadAllText(Path.Combine(run, "report.html")));
        XNamespace x = "http://www.w3.org/1999/xhtml";
        var spans = page.Descendants(x + "div").Where(d => (string?)d.Attribute("class") == "tokens").SelectMany(d => d.Elements(x + "span")).ToList();
        Assert.Contains(spans, s => ((string?)s.Attribute("style"))!.StartsWith("background-color: rgba(", StringComparison.Ordinal) && !((string?)s.Attribute("style"))!.EndsWith(", 0)", StringComparison.Ordinal));
        Assert.All(spans, s => Assert.NotNull(s.Attribute("title")));
    }
}
