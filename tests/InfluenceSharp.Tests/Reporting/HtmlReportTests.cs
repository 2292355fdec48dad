using System.Xml;
using System.Xml.Linq;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Reporting;

public class HtmlReportTests
{
    static readonly XNamespace X = "http://www.w3.org/1999/xhtml";

    static XDocument Parse(string html)
    {
        var settings = new XmlReaderSettings { DtdProcessing = DtdProcessing.Ignore };
        using var reader = XmlReader.Create(new StringReader(html), settings);
        return XDocument.Load(reader);
    }

    static byte[] SmallPng(Random rng)
    {
        var px = new byte[4 * 3 * 3]; rng.NextBytes(px);
        return PngWriter.Encode(px, 4, 3, 3);
    }

    [Fact]
    public void IsWellFormedWithEverySectionTableAndImage()
    {
        var rng = TestSeed.Random();
        byte[] png1 = SmallPng(rng), png2 = SmallPng(rng);
        var r = new HtmlReport("Run report");
        r.Section("Mislabel detection")
         .Paragraph("10% of labels corrupted.")
         .Table(["method", "AUC", "n"], [["TracIn", 0.93123, 10000], ["random", 0.5, null]], "summary")
         .Image(png1, "curves", "fraction found");
        r.Section("Profile").Pre("| stage | 1.0 s |\n| total | 2.0 s |").Image(png2, "second");
        r.Section("Empty section");

        var doc = Parse(r.ToHtml());
        var body = doc.Root!.Element(X + "body")!;
        Assert.Equal("Run report", doc.Root.Element(X + "head")!.Element(X + "title")!.Value);
        Assert.Equal(new[] { "Mislabel detection", "Profile", "Empty section" }, body.Descendants(X + "h2").Select(h => h.Value));
        Assert.Equal(3, body.Element(X + "nav")!.Descendants(X + "a").Count());

        var imgs = body.Descendants(X + "img").ToList();
        Assert.Equal(2, imgs.Count);
        const string prefix = "data:image/png;base64,";
        Assert.All(imgs, i => Assert.StartsWith(prefix, (string)i.Attribute("src")!));
        Assert.Equal(png1, Convert.FromBase64String(((string)imgs[0].Attribute("src")!)[prefix.Length..]));
        Assert.Equal(png2, Convert.FromBase64String(((string)imgs[1].Attribute("src")!)[prefix.Length..]));
        Assert.Equal("curves", (string)imgs[0].Attribute("alt")!);

        var cells = body.Descendants(X + "td").Select(td => td.Value).ToList();
        Assert.Equal(new[] { "TracIn", "0.9312", "10000", "random", "0.5", "" }, cells);
        Assert.Equal("| stage | 1.0 s |\n| total | 2.0 s |", body.Descendants(X + "pre").Single().Value);
    }

    [Fact]
    public void EscapesAllTextAndNeverEmitsRawMarkup()
    {
        const string evil = "<script>alert('x & y')</script>";
        var r = new HtmlReport(evil);
        r.Section(evil).Paragraph(evil).Pre(evil).Table([evil], [[evil]], evil).Image(SmallPng(TestSeed.Random()), evil, evil);
        r.Section("control \u0001 char and \"quotes\" and lone \ud800 surrogate");
        string html = r.ToHtml();
        Assert.DoesNotContain("<script", html, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("&lt;script&gt;alert(&#39;x &amp; y&#39;)&lt;/script&gt;", html);

        var doc = Parse(html);   // throws if the control character or the surrogate leaked through
        Assert.Equal(evil, doc.Root!.Element(X + "head")!.Element(X + "title")!.Value);
        Assert.Equal(evil, (string)doc.Descendants(X + "img").Single().Attribute("alt")!);
        // title, h1, nav link, h2, p, pre, caption, th, td, figcaption
        Assert.Equal(10, doc.Descendants().Count(e => e.Value == evil && !e.HasElements));
    }

    [Fact]
    public void RejectsNonPngImagesAndSavesAtomically()
    {
        var r = new HtmlReport("t");
        Assert.Throws<ArgumentException>(() => r.Section("s").Image([1, 2, 3], "not a png"));
        var plot = new LinePlot { Width = 200, Height = 150 }.Add("a", [0.0, 1], [0.0, 1]);
        r.Section("plot").Image(plot, "plot");
        using var dir = new TempDir();
        r.Save(dir.File("out/report.html"));
        Assert.Equal(r.ToHtml(), File.ReadAllText(dir.File("out/report.html")));
        Assert.Single(Directory.GetFiles(dir.File("out")));
    }
}
