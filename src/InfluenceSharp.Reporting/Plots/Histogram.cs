namespace InfluenceSharp.Reporting;

/// <summary>Overlaid histograms of named samples on shared bins, e.g. self-influence of clean and of
/// corrupted examples: translucent bars with a solid outline each, so overlaps stay readable.</summary>
public sealed class Histogram : Plot
{
    private sealed record Sample(string Name, double[] Values, Rgb Color);

    private readonly List<Sample> samples = new();

    public int Bins { get; set; } = 40;
    /// <summary>Bin range; null means from the smallest to the largest finite value of all samples.</summary>
    public double? RangeMin { get; set; }
    public double? RangeMax { get; set; }
    /// <summary>Show each sample's bin counts as fractions of that sample, so samples of very
    /// different sizes (10% corrupted, 90% clean) compare by shape.</summary>
    public bool Normalize { get; set; }
    public double FillAlpha { get; set; } = 0.35;

    public Histogram Add(string name, IEnumerable<double> values, Rgb? color = null)
    {
        samples.Add(new Sample(name, values.ToArray(), color ?? Rgb.Palette(samples.Count)));
        return this;
    }

    /// <summary>Shared bin edges (Bins + 1 of them) and each sample's per-bin heights. Values
    /// outside the range and non-finite values are not counted; the last bin includes its right edge.</summary>
    internal (double[] Edges, double[][] Heights) Compute()
    {
        var finite = samples.SelectMany(s => s.Values).Where(double.IsFinite).ToArray();
        double lo = RangeMin ?? (finite.Length > 0 ? finite.Min() : 0), hi = RangeMax ?? (finite.Length > 0 ? finite.Max() : 1);
        if (!(hi > lo)) (lo, hi) = Ticks.Pad(lo, hi, 0);
        int bins = Math.Max(1, Bins);
        var edges = Enumerable.Range(0, bins + 1).Select(i => lo + (hi - lo) * i / bins).ToArray();
        var heights = samples.Select(s =>
        {
            var h = new double[bins];
            int n = 0;
            foreach (double v in s.Values)
            {
                if (!double.IsFinite(v)) continue;
                n++;
                if (v < lo || v > hi) continue;
                h[Math.Min(bins - 1, (int)((v - lo) / (hi - lo) * bins))]++;
            }
            if (Normalize && n > 0) for (int i = 0; i < bins; i++) h[i] /= n;
            return h;
        }).ToArray();
        return (edges, heights);
    }

    private protected override (double XLo, double XHi, double YLo, double YHi) DataRange()
    {
        var (edges, heights) = Compute();
        double top = heights.Length == 0 ? 1 : heights.Max(h => h.Length == 0 ? 0 : h.Max());
        return (edges[0], edges[^1], 0, top > 0 ? top : 1);
    }

    private protected override (double X, double Y) Padding => (0.02, 0.06);
    private protected override bool YFromZero => true;
    private protected override string AutoYLabel => Normalize ? "fraction of sample" : "count";

    private protected override void DrawData(Canvas canvas, Axes axes)
    {
        var (edges, heights) = Compute();
        // Fills first, then all outlines, so no fill paints over another sample's outline.
        for (int s = 0; s < samples.Count; s++)
            for (int b = 0; b < heights[s].Length; b++)
                if (heights[s][b] > 0 && axes.Rect(edges[b], 0, edges[b + 1], heights[s][b]) is PixelRect r)
                    canvas.FillRect(r.X, r.Y, r.Width, r.Height, samples[s].Color, FillAlpha);
        for (int s = 0; s < samples.Count; s++)
        {
            // The outline as a step curve along the bar tops, down to zero at both ends.
            var xs = new List<double> { edges[0] };
            var ys = new List<double> { 0 };
            for (int b = 0; b < heights[s].Length; b++)
            {
                xs.Add(edges[b]); ys.Add(heights[s][b]);
                xs.Add(edges[b + 1]); ys.Add(heights[s][b]);
            }
            xs.Add(edges[^1]); ys.Add(0);
            axes.Polyline(canvas, xs, ys, samples[s].Color, 2, 0);
        }
    }

    private protected override IReadOnlyList<LegendEntry> LegendEntries() =>
        samples.Where(s => s.Name.Length > 0)
               .Select(s => new LegendEntry($"{s.Name} (n={s.Values.Count(double.IsFinite)})", s.Color, LegendKind.Box, FillAlpha: FillAlpha))
               .ToList();
}
