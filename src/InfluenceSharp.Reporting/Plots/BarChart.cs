namespace InfluenceSharp.Reporting;

/// <summary>Grouped bars: one group per category (e.g. "remove 1%", "5%", "10%"), one bar per series
/// (e.g. per method) in each group, with optional error bars (± the given half-widths).</summary>
public sealed class BarChart : Plot
{
    private sealed record Series(string Name, double[] Values, double[]? Errors, Rgb Color);

    private readonly List<Series> series = new();

    public BarChart(IEnumerable<string> categories) { Categories = categories.ToArray(); }

    public IReadOnlyList<string> Categories { get; }
    /// <summary>Fraction of a group's slot the bars fill together.</summary>
    public double GroupWidth { get; set; } = 0.8;
    /// <summary>Print each bar's value above it (below it when negative).</summary>
    public bool ShowValues { get; set; }
    public string ValueFormat { get; set; } = "G3";

    public BarChart Add(string name, IReadOnlyList<double> values, IReadOnlyList<double>? errors = null, Rgb? color = null)
    {
        if (values.Count != Categories.Count)
            throw new ArgumentException($"series '{name}' has {values.Count} values for {Categories.Count} categories");
        if (errors is not null && errors.Count != values.Count)
            throw new ArgumentException($"series '{name}' has {errors.Count} errors for {values.Count} values");
        series.Add(new Series(name, values.ToArray(), errors?.ToArray(), color ?? Rgb.Palette(series.Count)));
        return this;
    }

    private protected override (double XLo, double XHi, double YLo, double YHi) DataRange()
    {
        double lo = 0, hi = 0;
        foreach (var s in series)
            for (int i = 0; i < s.Values.Length; i++)
            {
                double v = s.Values[i], e = s.Errors is null || !double.IsFinite(s.Errors[i]) ? 0 : Math.Abs(s.Errors[i]);
                if (!double.IsFinite(v)) continue;
                lo = Math.Min(lo, v - e); hi = Math.Max(hi, v + e);
            }
        if (lo == 0 && hi == 0) hi = 1;
        return (-0.5, Categories.Count - 0.5, lo, hi);
    }

    private protected override (double X, double Y) Padding => (0, ShowValues ? 0.12 : 0.06);
    private protected override bool YFromZero => true;

    private protected override IReadOnlyList<(double X, string Label)>? CategoryTicks
    {
        get
        {
            int slot = (Width - 150) / Math.Max(1, Categories.Count);
            return Categories.Select((c, i) => ((double)i, string.Join('\n', TextLayout.Wrap(c, slot, TextScale).Take(2)))).ToList();
        }
    }

    private protected override void DrawData(Canvas canvas, Axes axes)
    {
        int n = Math.Max(1, series.Count);
        double bw = GroupWidth / n;
        for (int s = 0; s < series.Count; s++)
        {
            var ser = series[s];
            for (int i = 0; i < ser.Values.Length; i++)
            {
                double v = ser.Values[i];
                if (!double.IsFinite(v)) continue;
                double x0 = i - GroupWidth / 2 + s * bw, x1 = x0 + bw;
                if (axes.Rect(x0, 0, x1, v) is PixelRect r)
                {
                    // A 1-pixel white gap between neighbouring bars keeps them apart.
                    canvas.FillRect(r.X + 1, r.Y, Math.Max(1, r.Width - 1), r.Height, ser.Color);
                }
                double cx = axes.PX((x0 + x1) / 2);
                if (ser.Errors is { } err && double.IsFinite(err[i]) && err[i] != 0)
                {
                    double e = Math.Abs(err[i]);
                    int px = (int)Math.Round(cx), top = (int)Math.Round(axes.PY(v + e)), bot = (int)Math.Round(axes.PY(v - e));
                    int cap = Math.Max(3, (int)((axes.PX(x1) - axes.PX(x0)) / 5));
                    canvas.DrawLine(px, top, px, bot, Ink, 2);
                    canvas.DrawLine(px - cap, top, px + cap, top, Ink, 2);
                    canvas.DrawLine(px - cap, bot, px + cap, bot, Ink, 2);
                }
                if (ShowValues)
                {
                    double e = ser.Errors is { } er && double.IsFinite(er[i]) ? Math.Abs(er[i]) : 0;
                    string label = v.ToString(ValueFormat, System.Globalization.CultureInfo.InvariantCulture);
                    // Full-size text when it fits over the bar, smaller otherwise.
                    int ts = Math.Max(1, TextScale);
                    while (ts > 1 && Canvas.MeasureText(label, ts).Width > axes.PX(x1) - axes.PX(x0) + 4) ts--;
                    int y = v >= 0 ? (int)Math.Round(axes.PY(v + e)) - 4 - Canvas.CapHeight(ts) : (int)Math.Round(axes.PY(v - e)) + 4;
                    canvas.DrawText((int)Math.Round(cx), y, label, Ink, ts, TextAlign.Center);
                }
            }
        }
        // The zero line, so that negative bars read as below it.
        int zy = (int)Math.Round(axes.PY(0));
        canvas.DrawLine(axes.Area.X, zy, axes.Area.Right - 1, zy, Ink);
    }

    private protected override IReadOnlyList<LegendEntry> LegendEntries() =>
        series.Where(s => s.Name.Length > 0).Select(s => new LegendEntry(s.Name, s.Color, LegendKind.Box)).ToList();
}
