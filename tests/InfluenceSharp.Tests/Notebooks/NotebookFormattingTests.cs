using InfluenceSharp.Methods;
using System.Text.RegularExpressions;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Notebooks;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using Microsoft.DotNet.Interactive.Formatting;

namespace InfluenceSharp.Tests.Notebooks;

/// <summary>What a .NET Interactive notebook shows for the library's results: the formatters are
/// found by the formatting library itself (TypeFormatterSource on the views, registration for the
/// reporting library's figures), as in a kernel.</summary>
public class NotebookFormattingTests
{
    static LabeledDataset Train => Embedded.Split.Train.Subset(Enumerable.Range(0, 40).ToArray());

    static string Html(object o) => o.ToDisplayString(HtmlFormatter.MimeType);

    [Fact]
    public void DetectionShowsTheTableAndTheCurve()
    {
        var self = Enumerable.Range(0, 40).Select(i => (double)((i * 7) % 40)).ToArray();
        var mask = Enumerable.Range(0, 40).Select(i => i % 5 == 0).ToArray();
        var r = MislabelDetection.Evaluate(self, mask);
        string html = Html(Notebook.Detection(new Dictionary<string, DetectionResult> { ["ekfac"] = r, ["tracin<b>"] = r }));
        Assert.Contains("<table>", html);
        Assert.Contains("<td>ekfac</td>", html);
        Assert.Contains("tracin&lt;b&gt;", html);                 // names are escaped
        Assert.Contains($"<td>{r.RocAuc:F3}</td>", html);
        Assert.Contains($"<td>{r.Table[0.1]:P1}</td>", html);
        Assert.Single(Regex.Matches(html, "data:image/png;base64,"));   // the curve, inline
    }

    [Fact]
    public void SelfInfluenceAndExplanationShowImagesLabelsScoresAndSources()
    {
        var train = Train;
        var self = Enumerable.Range(0, 40).Select(i => i == 17 ? 100.0 : i).ToArray();
        var record = new CorruptionRecord(0.1, 0, new[] { 17 }, new[] { (train.Labels[17] + 1) % 10 }, new[] { train.Labels[17] });
        string html = Html(Notebook.SelfInfluence(train, self, top: 5, corruption: record, method: "m"));
        Assert.Equal(5, Regex.Matches(html, "data:image/png;base64,").Count);
        int first = html.IndexOf("1. #17", StringComparison.Ordinal);
        Assert.True(first >= 0, html);
        Assert.Contains("flipped; true: " + train.ClassName(record.TrueLabels[0]), html);
        Assert.Contains(System.Net.WebUtility.HtmlEncode(train.SourceOf(17)!.Text), html);
        Assert.Contains("outline:3px solid", html);               // the flipped example is framed

        var top = new TopKResult(new[] { new[] { 3, 4 } }, new[] { new[] { 2.5, 1.0 } }, new[] { new[] { 9 } }, new[] { new[] { -0.5 } });
        var queries = Embedded.Split.Test.Subset(new[] { 0 });
        var view = Notebook.Explanation(top, 0, queries, train, method: "ekfac");
        html = Html(view);
        Assert.Equal(4, Regex.Matches(html, "data:image/png;base64,").Count);   // query, 2 proponents, 1 opponent
        Assert.True(html.IndexOf("proponents (2)", StringComparison.Ordinal) < html.IndexOf("opponents (1)", StringComparison.Ordinal));
        Assert.Contains("score 2.5", html);
        Assert.Contains("score -0.5", html);
        Assert.Contains("label: " + train.ClassName(train.Labels[3]), html);
        Assert.Contains("ekfac: query 0", view.ToDisplayString(PlainTextFormatter.MimeType));
    }

    [Fact]
    public void ReportingFiguresDisplayAsInlineImages()
    {
        Notebook.RegisterFormatters();
        var plot = new LinePlot { Title = "t" }.Add("a", new[] { 0.0, 1 }, new[] { 0.0, 1 }, Rgb.Palette(0));
        var html = Html(plot);
        Assert.StartsWith("<img src=\"data:image/png;base64,", html);
        var png = Convert.FromBase64String(Regex.Match(html, "base64,([^\"]+)").Groups[1].Value);
        Assert.Equal(plot.ToPng(), png);
    }

    [Fact]
    public void TheGlibcxxNeedOfLibTorchSharpIsMarkedWeak()
    {
        string? lib = Directory.GetFiles(AppContext.BaseDirectory, "libLibTorchSharp.so", SearchOption.AllDirectories).FirstOrDefault();
        string? torchsharp = Path.GetDirectoryName(typeof(TorchSharp.torch).Assembly.Location);
        string original = Path.Combine(torchsharp!, "..", "..", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(original)) original = lib ?? "";
        Assert.True(File.Exists(original), "no libLibTorchSharp.so to test on");
        var bytes = File.ReadAllBytes(original);
        var copy = (byte[])bytes.Clone();
        bool had = TorchNative.Weaken(copy);
        Assert.Equal(bytes.Length, copy.Length);
        if (!had) return;                           // a TorchSharp build without that need
        int changed = Enumerable.Range(0, bytes.Length).Count(i => bytes[i] != copy[i]);
        Assert.InRange(changed, 0, 1);              // one flag byte (none when already weak)
        Assert.False(TorchNative.Weaken(new byte[100]));
    }
}
