using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Reporting;

public class PlotTests
{
    static double[] Rand(Random rng, int n, double scale = 1, double shift = 0) =>
        Enumerable.Range(0, n).Select(_ => rng.NextDouble() * scale + shift).ToArray();

    /// <summary>Pixels of a colour inside the middle of the image, where only the plot area is.</summary>
    static int CountColor(PngTestDecoder.Image img, Rgb c)
    {
        int n = 0;
        for (int y = img.Height / 8; y < img.Height * 7 / 8; y++)
            for (int x = img.Width / 6; x < img.Width * 5 / 6; x++)
                if (img.Rgb(x, y) == (c.R, c.G, c.B)) n++;
        return n;
    }

    [Fact]
    public void LinePlotHasRequestedSizeAndDrawsEachSeries()
    {
        var rng = TestSeed.Random();
        var x = Enumerable.Range(0, 50).Select(i => i / 49.0).ToArray();
        var p = new LinePlot { Title = "detection", XLabel = "fraction inspected", YLabel = "fraction found", Width = 640, Height = 420 };
        p.Add("A", x, x.Select(v => Math.Sqrt(v)).ToArray())
         .Add("B", x, Rand(rng, 50), color: new Rgb(1, 2, 200))
         .AddDiagonal();
        var img = PngTestDecoder.Decode(p.ToPng());
        Assert.Equal((640, 420), (img.Width, img.Height));
        Assert.True(CountColor(img, Rgb.Palette(0)) > 100);
        Assert.True(CountColor(img, new Rgb(1, 2, 200)) > 100);
        Assert.True(CountColor(img, Rgb.Gray) > 50);

        var q = new LinePlot { Width = 640, Height = 420 };
        q.Add("A", x, Rand(rng, 50));
        var r = new LinePlot { Width = 640, Height = 420 };
        r.Add("A", x, Rand(rng, 50));
        Assert.NotEqual(q.ToPng(), r.ToPng());
    }

    [Fact]
    public void LinePlotSurvivesGapsOutOfRangeAndEmptyData()
    {
        var p = new LinePlot { YMin = 0, YMax = 1, Width = 300, Height = 200 };
        p.Add("gappy", [1, 2, 3, 4, 5], [0.5, double.NaN, 1e12, -1e12, 0.2], markers: true);
        Assert.Equal(300, PngTestDecoder.Decode(p.ToPng()).Width);
        Assert.Equal(200, PngTestDecoder.Decode(new LinePlot { Width = 200, Height = 200 }.ToPng()).Height);
        Assert.Throws<ArgumentException>(() => p.Add("bad", [1, 2], [1]));
    }

    [Fact]
    public void HistogramSharesBinsAndCountsEveryFiniteValue()
    {
        var h = new Histogram { Bins = 4 };
        h.Add("a", [0, 1, 1, 2, 4, double.NaN]).Add("b", [3, 3.9, 4]);
        var (edges, heights) = h.Compute();
        Assert.Equal(new[] { 0, 1, 2, 3, 4.0 }, edges);
        Assert.Equal(new[] { 1, 2, 1, 1.0 }, heights[0]);
        Assert.Equal(new[] { 0, 0, 0, 3.0 }, heights[1]);
        h.Normalize = true;
        Assert.Equal(1.0, h.Compute().Heights[0].Sum(), 12);
    }

    [Fact]
    public void HistogramRendersBothSamplesAndDependsOnData()
    {
        var rng = TestSeed.Random();
        Histogram Make(double shift) => new Histogram { Title = "self-influence", XLabel = "score", Width = 500, Height = 320 }
            .Add("clean", Rand(rng, 900)).Add("corrupted", Rand(rng, 100, 1, shift), Rgb.Red);
        var a = Make(0.5);
        var img = PngTestDecoder.Decode(a.ToPng());
        Assert.Equal((500, 320), (img.Width, img.Height));
        Assert.True(CountColor(img, Rgb.Palette(0)) > 50);
        Assert.True(CountColor(img, Rgb.Red) > 50);
        Assert.NotEqual(a.ToPng(), Make(1.5).ToPng());
    }

    [Fact]
    public void BarChartDrawsGroupsWithErrorBars()
    {
        var rng = TestSeed.Random();
        BarChart Make() => new BarChart(["1%", "5%", "10%"]) { Title = "removal", YLabel = "accuracy change", Width = 520, Height = 340, ShowValues = true }
            .Add("TracIn", Rand(rng, 3, -5), Rand(rng, 3, 0.5))
            .Add("random", Rand(rng, 3, 2, -1));
        var b = Make();
        var img = PngTestDecoder.Decode(b.ToPng());
        Assert.Equal((520, 340), (img.Width, img.Height));
        Assert.True(CountColor(img, Rgb.Palette(0)) > 200);
        Assert.True(CountColor(img, Rgb.Palette(1)) > 50);
        Assert.NotEqual(b.ToPng(), Make().ToPng());
        Assert.Throws<ArgumentException>(() => b.Add("short", [1.0]));
    }

    [Fact]
    public void ImageGridShowsEveryImagePixelAndBorders()
    {
        var rng = TestSeed.Random();
        var rgb = new byte[3 * 6 * 5]; rng.NextBytes(rgb);
        var gray = new byte[6 * 5]; rng.NextBytes(gray);
        var border = new Rgb(250, 1, 1);
        var grid = new ImageGrid { Title = "query and proponents", Scale = 2 };
        grid.AddRow("query", [new GridImage(gray, 1, 6, 5, "#1 y=Coat\nscore 0.123")])
            .AddRow("proponents", [new GridImage(rgb, 3, 6, 5, "#2 y=Bag", border), new GridImage(gray, 1, 6, 5)]);
        var img = PngTestDecoder.Decode(grid.ToPng());
        var colors = new HashSet<(byte, byte, byte)>();
        for (int y = 0; y < img.Height; y++) for (int x = 0; x < img.Width; x++) colors.Add(img.Rgb(x, y));
        for (int i = 0; i < 30; i++)
        {
            Assert.Contains((rgb[i], rgb[30 + i], rgb[60 + i]), colors);
            Assert.Contains((gray[i], gray[i], gray[i]), colors);
        }
        Assert.Contains(((byte)250, (byte)1, (byte)1), colors);
        Assert.Throws<ArgumentException>(() => grid.AddRow("bad", [new GridImage(gray, 3, 6, 5)]));
    }

    [Fact]
    public void GridImageFromDatasetCopiesOneImage()
    {
        var d = (InfluenceSharp.Data.ImageDataset)Embedded.Split.Train;
        var g = GridImage.From(d, 5, "x");
        Assert.Equal((d.Channels, d.Height, d.Width), (g.Channels, g.Height, g.Width));
        Assert.Equal(d.Pixels.AsSpan(5 * d.ImageSize, d.ImageSize).ToArray(), g.Pixels);
    }

    [Theory]
    [InlineData(0, 1, 0.0, 0.2, "0.0", "0.2")]
    [InlineData(0, 0.28, 0.0, 0.05, "0.00", "0.05")]
    [InlineData(-10, 0.3, -10.0, 2, "-10", "-8")]
    [InlineData(0, 1700, 0.0, 250, "0", "250")]
    [InlineData(-3, 3, -3, 1, "-3", "-2")]
    [InlineData(0, 12, 0, 2.5, "0.0", "2.5")]
    [InlineData(0.01, 1.2, 0.25, 0.25, "0.25", "0.50")]
    [InlineData(0, 3e-5, 0.0, 5e-6, "0", "0.5e-5")]
    [InlineData(1e5, 4e5, 1e5, 5e4, "1.0e5", "1.5e5")]
    public void TicksAreNiceAndLabelledConsistently(double lo, double hi, double first, double step, string firstLabel, string secondLabel)
    {
        var (vals, s) = Ticks.Nice(lo, hi, 6);
        Assert.Equal(first, vals[0], 12);
        Assert.Equal(step, s, 12);
        var labels = Ticks.Labels(vals, s);
        Assert.Equal(firstLabel, labels[0]);
        Assert.Equal(secondLabel, labels[1]);
    }
}
