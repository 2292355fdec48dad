using System.Globalization;
using System.Text;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Reporting;

/// <summary>A self-contained HTML page: a title and sections of paragraphs, preformatted text,
/// tables and PNG images embedded as data: URIs, so the one file can be mailed or archived. All
/// text is escaped. The markup is also well-formed XML (XHTML syntax), so it can be checked with an
/// XML parser.</summary>
public sealed class HtmlReport
{
    private readonly List<HtmlSection> sections = new();

    public HtmlReport(string title) { Title = title; }

    public string Title { get; }

    /// <summary>Appends a new section; fill it through the returned object.</summary>
    public HtmlSection Section(string heading)
    {
        var s = new HtmlSection(heading, $"s{sections.Count + 1}");
        sections.Add(s);
        return s;
    }

    public string ToHtml()
    {
        var sb = new StringBuilder();
        sb.Append("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n");
        sb.Append("<meta charset=\"utf-8\" />\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\" />\n");
        sb.Append("<title>").Append(Html.Escape(Title)).Append("</title>\n");
        sb.Append("<style>").Append(Css).Append("</style>\n</head>\n<body>\n");
        sb.Append("<h1>").Append(Html.Escape(Title)).Append("</h1>\n");
        if (sections.Count > 1)
        {
            sb.Append("<nav><ol>\n");
            foreach (var s in sections)
                sb.Append("<li><a href=\"#").Append(s.Id).Append("\">").Append(Html.Escape(s.Heading)).Append("</a></li>\n");
            sb.Append("</ol></nav>\n");
        }
        foreach (var s in sections) s.WriteTo(sb);
        sb.Append("</body>\n</html>\n");
        return sb.ToString();
    }

    public void Save(string path) => AtomicFile.WriteAllText(path, ToHtml());

    private const string Css = """

body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #1e1e1e; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
nav ol { padding-left: 1.5em; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .8em; overflow-x: auto; font-size: 13px; line-height: 1.3; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #d0d7de; padding: .3em .7em; text-align: left; }
th { background: #f0f2f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafbfc; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 14px; }
td.text, div.tokens { white-space: pre-wrap; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 13px; }
div.tokens { border: 1px solid #e1e4e8; padding: .4em .6em; margin: .3em 0 .8em 0; }
div.tokens span { border-radius: 2px; }
p.example { margin: .8em 0 0 0; font-size: 14px; }

""";
}

/// <summary>One section of an <see cref="HtmlReport"/>: a heading and blocks in the order added.</summary>
public sealed class HtmlSection
{
    private readonly List<string> blocks = new();

    internal HtmlSection(string heading, string id) { Heading = heading; Id = id; }

    public string Heading { get; }
    internal string Id { get; }

    public HtmlSection Paragraph(string text)
    {
        blocks.Add($"<p>{Html.Escape(text)}</p>");
        return this;
    }

    /// <summary>Preformatted text, e.g. a profiler table or a command line.</summary>
    public HtmlSection Pre(string text)
    {
        blocks.Add($"<pre>{Html.Escape(text)}</pre>");
        return this;
    }

    /// <summary>A table; numbers are formatted with the invariant culture (doubles to 4 significant
    /// digits) and right-aligned. Null cells are empty.</summary>
    public HtmlSection Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<object?>> rows, string? caption = null)
    {
        var sb = new StringBuilder("<table>\n");
        if (caption is not null) sb.Append("<caption>").Append(Html.Escape(caption)).Append("</caption>\n");
        sb.Append("<thead><tr>");
        foreach (var h in headers) sb.Append("<th>").Append(Html.Escape(h)).Append("</th>");
        sb.Append("</tr></thead>\n<tbody>\n");
        foreach (var row in rows)
        {
            sb.Append("<tr>");
            foreach (var cell in row)
            {
                if (cell is TextCell text) { sb.Append("<td class=\"text\">").Append(Html.Escape(text.Text)).Append("</td>"); continue; }
                bool num = cell is double or float or decimal or int or long or short or byte or uint or ulong or ushort or sbyte;
                sb.Append(num ? "<td class=\"num\">" : "<td>").Append(Html.Escape(FormatCell(cell))).Append("</td>");
            }
            sb.Append("</tr>\n");
        }
        sb.Append("</tbody>\n</table>");
        blocks.Add(sb.ToString());
        return this;
    }

    /// <summary>A text whose pieces (tokens) carry scores, each piece's background coloured by its score:
    /// blue for positive, red for negative, the stronger the larger |score| against
    /// <paramref name="scale"/> (the largest |score| when null); each piece's score is its tooltip.</summary>
    public HtmlSection HighlightedText(IReadOnlyList<(string Text, double Score)> pieces, double? scale = null)
    {
        double max = scale ?? pieces.Select(p => Math.Abs(p.Score)).Where(double.IsFinite).DefaultIfEmpty(0).Max();
        var sb = new StringBuilder("<div class=\"tokens\">");
        foreach (var (text, score) in pieces)
        {
            double a = max > 0 && double.IsFinite(score) ? Math.Min(1, Math.Abs(score) / max) * 0.75 : 0;
            string rgb = score >= 0 ? "37, 99, 235" : "220, 38, 38";
            sb.Append("<span style=\"background-color: rgba(").Append(rgb).Append(", ").Append(a.ToString("0.###", CultureInfo.InvariantCulture))
              .Append(")\" title=\"").Append(Html.Escape(score.ToString("G4", CultureInfo.InvariantCulture))).Append("\">")
              .Append(Html.Escape(text)).Append("</span>");
        }
        blocks.Add(sb.Append("</div>").ToString());
        return this;
    }

    /// <summary>An example's text, its line breaks and spaces kept (as <see cref="HighlightedText"/> without scores).</summary>
    public HtmlSection ExampleText(string text)
    {
        blocks.Add($"<div class=\"tokens\">{Html.Escape(text)}</div>");
        return this;
    }

    /// <summary>A short paragraph introducing an example (a query, a proponent): smaller and closer to what follows.</summary>
    public HtmlSection ExampleHeading(string text)
    {
        blocks.Add($"<p class=\"example\">{Html.Escape(text)}</p>");
        return this;
    }

    /// <summary>A PNG embedded in the page as a data: URI.</summary>
    public HtmlSection Image(byte[] png, string alt, string? caption = null)
    {
        ReadOnlySpan<byte> sig = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        if (!png.AsSpan().StartsWith(sig)) throw new ArgumentException($"image '{alt}' is not a PNG");
        var sb = new StringBuilder("<figure><img src=\"data:image/png;base64,");
        sb.Append(Convert.ToBase64String(png)).Append("\" alt=\"").Append(Html.Escape(alt)).Append("\" />");
        if (caption is not null) sb.Append("<figcaption>").Append(Html.Escape(caption)).Append("</figcaption>");
        sb.Append("</figure>");
        blocks.Add(sb.ToString());
        return this;
    }

    public HtmlSection Image(Canvas canvas, string alt, string? caption = null) => Image(canvas.ToPng(), alt, caption);
    public HtmlSection Image(Plot plot, string alt, string? caption = null) => Image(plot.ToPng(), alt, caption);
    public HtmlSection Image(ImageGrid grid, string alt, string? caption = null) => Image(grid.ToPng(), alt, caption);

    private static string FormatCell(object? cell) => cell switch
    {
        null => "",
        double d => FormatNumber(d),
        float f => FormatNumber(f),
        IFormattable x => x.ToString(null, CultureInfo.InvariantCulture),
        _ => cell.ToString() ?? "",
    };

    private static string FormatNumber(double d) =>
        double.IsFinite(d) && d == Math.Round(d) && Math.Abs(d) < 1e15 ? d.ToString("F0", CultureInfo.InvariantCulture)
                                                                       : d.ToString("G4", CultureInfo.InvariantCulture);

    internal void WriteTo(StringBuilder sb)
    {
        sb.Append("<section id=\"").Append(Id).Append("\">\n<h2>").Append(Html.Escape(Heading)).Append("</h2>\n");
        foreach (var b in blocks) sb.Append(b).Append('\n');
        sb.Append("</section>\n");
    }
}

/// <summary>A table cell holding text whose line breaks and spaces are kept (an example's text).</summary>
public sealed record TextCell(string Text)
{
    public override string ToString() => Text;
}

internal static class Html
{
    /// <summary>Escapes the five XML special characters; characters that XML 1.0 forbids (most
    /// control characters, unpaired surrogates) become U+FFFD so the page stays well-formed.</summary>
    public static string Escape(string text)
    {
        var sb = new StringBuilder(text.Length + 16);
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            switch (c)
            {
                case '&': sb.Append("&amp;"); break;
                case '<': sb.Append("&lt;"); break;
                case '>': sb.Append("&gt;"); break;
                case '"': sb.Append("&quot;"); break;
                case '\'': sb.Append("&#39;"); break;
                default:
                    if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1])) { sb.Append(c).Append(text[++i]); }
                    else if (char.IsSurrogate(c) || (c < 0x20 && c is not ('\t' or '\n' or '\r')) || c is '\uFFFE' or '\uFFFF') sb.Append('\uFFFD');
                    else sb.Append(c);
                    break;
            }
        }
        return sb.ToString();
    }
}
