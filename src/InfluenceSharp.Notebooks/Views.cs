using System.Globalization;
using System.Net;
using System.Text;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Reporting;
using InfluenceSharp.Methods;
using InfluenceSharp.Scores;
using Microsoft.DotNet.Interactive.Formatting;

namespace InfluenceSharp.Notebooks;

/// <summary>One shown example: its image (null for tabular data), a title line, and the lines under it.</summary>
public sealed record ExampleCard(byte[]? Png, string Title, IReadOnlyList<string> Lines, bool Flagged = false);

/// <summary>Training or query examples as an image grid with labels, scores and sources; displays as
/// HTML in a notebook (images inline, no external files).</summary>
[TypeFormatterSource(typeof(NotebookFormatterSource), PreferredMimeTypes = new[] { "text/html" })]
public sealed class ExampleGrid
{
    public ExampleGrid(string title, IReadOnlyList<ExampleCard> cards) { Title = title; Cards = cards; }
    public string Title { get; }
    public IReadOnlyList<ExampleCard> Cards { get; }
    public override string ToString() => $"{Title}: " + string.Join("; ", Cards.Select(c => c.Title + " " + string.Join(" ", c.Lines)));
}

/// <summary>A query with its proponents (helpful, score &gt; 0) and opponents (harmful, &lt; 0).</summary>
[TypeFormatterSource(typeof(NotebookFormatterSource), PreferredMimeTypes = new[] { "text/html" })]
public sealed class AttributionView
{
    public AttributionView(string title, ExampleCard query, ExampleGrid proponents, ExampleGrid opponents)
    {
        Title = title; Query = query; Proponents = proponents; Opponents = opponents;
    }
    public string Title { get; }
    public ExampleCard Query { get; }
    public ExampleGrid Proponents { get; }
    public ExampleGrid Opponents { get; }
    public override string ToString() => $"{Title}\n{Proponents}\n{Opponents}";
}

/// <summary>Mislabel detection of one or more methods: the found-at table with ROC AUC, and the curve.</summary>
[TypeFormatterSource(typeof(NotebookFormatterSource), PreferredMimeTypes = new[] { "text/html" })]
public sealed class DetectionView
{
    public DetectionView(IReadOnlyDictionary<string, DetectionResult> results) { Results = results; }
    public IReadOnlyDictionary<string, DetectionResult> Results { get; }
    public static readonly double[] Fractions = { 0.05, 0.1, 0.2, 0.3 };

    public override string ToString()
    {
        var sb = new StringBuilder(string.Create(CultureInfo.InvariantCulture, $"{"method",-14} {"5%",7} {"10%",7} {"20%",7} {"30%",7} {"ROC AUC",8}\n"));
        foreach (var (name, r) in Results)
            sb.Append(CultureInfo.InvariantCulture, $"{name,-14} {string.Join(" ", Fractions.Select(f => $"{r.Table[f],7:P1}"))} {r.RocAuc,8:F3}\n");
        return sb.ToString();
    }
}

/// <summary>The HTML of the views above, and of the reporting library's figures (plots, image grids).</summary>
public static class Html
{
    const string CardStyle = "display:inline-block;vertical-align:top;width:96px;margin:2px;font:11px sans-serif;";

    static string E(string s) => WebUtility.HtmlEncode(s);

    /// <summary>A PNG as an inline image (data URI).</summary>
    public static string Image(byte[] png, int? width = null, bool pixelated = false) =>
        $"<img src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"{(width is { } w ? $" width=\"{w}\"" : "")}{(pixelated ? " style=\"image-rendering:pixelated\"" : "")}/>";

    public static string Card(ExampleCard c)
    {
        var sb = new StringBuilder($"<div style=\"{CardStyle}{(c.Flagged ? "outline:3px solid #c62828;" : "")}\">");
        if (c.Png is { } png) sb.Append(Image(png, 88, pixelated: true)).Append("<br/>");
        sb.Append("<b>").Append(E(c.Title)).Append("</b>");
        foreach (var l in c.Lines) sb.Append("<br/>").Append(E(l));
        return sb.Append("</div>").ToString();
    }

    public static string Grid(ExampleGrid g) =>
        $"<div><div style=\"font:bold 13px sans-serif;margin:6px 0 2px\">{E(g.Title)}</div><div>{(g.Cards.Count == 0 ? "<i>none</i>" : string.Concat(g.Cards.Select(Card)))}</div></div>";

    public static string Attribution(AttributionView v) =>
        $"<div><div style=\"font:bold 14px sans-serif\">{E(v.Title)}</div><div style=\"display:flex;gap:12px\"><div>{Card(v.Query)}</div><div>{Grid(v.Proponents)}{Grid(v.Opponents)}</div></div></div>";

    public static string Detection(DetectionView v)
    {
        var sb = new StringBuilder("<div><table><thead><tr><th>method</th>");
        foreach (var f in DetectionView.Fractions) sb.Append(CultureInfo.InvariantCulture, $"<th>found at {f:P0}</th>");
        sb.Append("<th>ROC AUC</th><th>corrupted / ranked</th></tr></thead><tbody>");
        foreach (var (name, r) in v.Results)
        {
            sb.Append("<tr><td>").Append(E(name)).Append("</td>");
            foreach (var f in DetectionView.Fractions) sb.Append(CultureInfo.InvariantCulture, $"<td>{r.Table[f]:P1}</td>");
            sb.Append(CultureInfo.InvariantCulture, $"<td>{r.RocAuc:F3}</td><td>{r.Corrupted} / {r.Count}</td></tr>");
        }
        sb.Append("</tbody></table>");
        if (v.Results.Count > 0) sb.Append(Image(Figures.DetectionCurves(v.Results).ToPng(), 560));
        return sb.Append("</div>").ToString();
    }
}

/// <summary>Formatters of the views (found through <see cref="TypeFormatterSourceAttribute"/>) and of
/// the reporting library's figures (registered by <see cref="Notebook.RegisterFormatters"/>).</summary>
public sealed class NotebookFormatterSource : ITypeFormatterSource
{
    public IEnumerable<ITypeFormatter> CreateTypeFormatters()
    {
        yield return new HtmlFormatter<ExampleGrid>((g, c) => c.Writer.Write(Html.Grid(g)));
        yield return new HtmlFormatter<AttributionView>((v, c) => c.Writer.Write(Html.Attribution(v)));
        yield return new HtmlFormatter<DetectionView>((v, c) => c.Writer.Write(Html.Detection(v)));
        yield return new PlainTextFormatter<ExampleGrid>((g, c) => c.Writer.Write(g.ToString()));
        yield return new PlainTextFormatter<AttributionView>((v, c) => c.Writer.Write(v.ToString()));
        yield return new PlainTextFormatter<DetectionView>((v, c) => c.Writer.Write(v.ToString()));
    }
}
