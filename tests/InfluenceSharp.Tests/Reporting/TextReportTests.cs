using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Reporting;

/// <summary>Text explanations in the report: each token of a proponent or opponent as a span whose
/// background colour follows its per-token score (blue positive, red negative, one scale per query),
/// the text escaped and the page well formed; explanations of images add nothing.</summary>
public class TextReportTests
{
    static readonly XNamespace X = "http://www.w3.org/1999/xhtml";

    const string LanguageModelExplain = """
    [ { "query": "prompt", "text": "Q <x>",
        "proponents": [ { "index": 4, "score": 2.5, "source": { "kind": "text", "text": "ab<script>&",
                          "documents": [ { "document": 1, "where": "c.txt line 3", "start": 0, "end": 12 } ] },
                          "tokens": [ { "position": 0, "token": "", "score": 0.5 }, { "position": 1, "token": "ab", "score": 3.0 },
                                      { "position": 2, "token": "<script>", "score": -1.0 }, { "position": 3, "token": "&", "score": 0 } ] } ],
        "opponents": [ { "index": 7, "score": -0.75, "source": { "kind": "text", "text": "zz", "documents": [] },
                         "tokens": [ { "position": 0, "token": "zz", "score": -0.75 } ] } ] } ]
    """;

    [Fact]
    public void TokensCarryScoreColoursAndEscapedText()
    {
        using var dir = new TempDir();
        string json = dir.File("explain-ekfac.json");
        File.WriteAllText(json, LanguageModelExplain);
        var report = new HtmlReport("t");
        Assert.True(RunReport.AddTextExplanations(report.Section("Proponents and opponents"), json));
        string html = report.ToHtml();
        var doc = XDocument.Parse(html);
        Assert.DoesNotContain("<script>", html);
        var blocks = doc.Descendants(X + "div").Where(d => (string?)d.Attribute("class") == "tokens").ToList();
        Assert.Equal(3, blocks.Count);                     // the query, one proponent, one opponent
        Assert.Equal("Q <x>", blocks[0].Value);
        var pro = blocks[1].Elements(X + "span").ToList();
        Assert.Equal(new[] { "", "ab", "<script>", "&" }, pro.Select(s => s.Value));
        Assert.Equal("ab<script>&", blocks[1].Value);
        (string Rgb, double Alpha) Colour(XElement s)
        {
            var m = Regex.Match((string)s.Attribute("style")!, @"^background-color: rgba\((\d+, \d+, \d+), ([0-9.]+)\)$");
            Assert.True(m.Success, (string?)s.Attribute("style"));
            return (m.Groups[1].Value, double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        }
        // Scale: the query's largest |token score| (3.0) is the strongest colour.
        Assert.Equal(("37, 99, 235", 0.75), Colour(pro[1]));
        Assert.Equal(("37, 99, 235", 0.125), Colour(pro[0]));
        Assert.Equal(("220, 38, 38", 0.25), Colour(pro[2]));
        Assert.Equal(0.0, Colour(pro[3]).Alpha);
        Assert.Equal(("220, 38, 38", 0.188), Colour(blocks[2].Elements(X + "span").Single()));
        Assert.Equal("-1", (string?)pro[2].Attribute("title"));
        Assert.Contains("c.txt line 3", html);
    }

    [Fact]
    public void ExplanationsOfImagesAddNothing()
    {
        using var dir = new TempDir();
        string json = dir.File("explain-ekfac.json");
        File.WriteAllText(json, """[ { "query": "test0", "label": "cat", "source": null, "proponents": [ { "index": 1, "score": 1.0, "label": "cat", "source": null } ], "opponents": [] } ]""");
        var report = new HtmlReport("t");
        var section = report.Section("x");
        Assert.False(RunReport.AddTextExplanations(section, json));
        Assert.DoesNotContain("class=\"tokens\"", report.ToHtml());
    }
}
