namespace InfluenceSharp.Reporting;

/// <summary>Named (x, y) series as lines: detection curves (fraction inspected vs fraction of
/// mislabeled examples found, with a dashed diagonal for random order), training curves per epoch.
/// Non-finite points leave a gap in their line.</summary>
public sealed class LinePlot : Plot
{
    private sealed record Series(string Name, double[] X, double[] Y, Rgb Color, int Thickness, int Dash, bool Markers);

    private readonly List<Series> series = new();

    /// <summary>Adds a series (drawn in the order added) and returns the plot.</summary>
    /// <param name="name">The legend entry.</param>
    /// <param name="x">X values.</param>
    /// <param name="y">Y values, as many as <paramref name="x"/>.</param>
    /// <param name="color">Null: the next colour of the palette.</param>
    /// <param name="dashed">Dashed, for references such as "random".</param>
    /// <param name="markers">A square at every point: for short series such as per-epoch values.</param>
    /// <param name="thickness">Line width in pixels.</param>
    public LinePlot Add(string name, IReadOnlyList<double> x, IReadOnlyList<double> y, Rgb? color = null,
                        bool dashed = false, bool markers = false, int thickness = 2)
    {
        if (x.Count != y.Count) throw new ArgumentException($"series '{name}': {x.Count} x values but {y.Count} y values");
        series.Add(new Series(name, x.ToArray(), y.ToArray(), color ?? Rgb.Palette(series.Count(s => s.Dash == 0)),
                              Math.Clamp(thickness, 1, 3), dashed ? 8 : 0, markers));
        return this;
    }

    /// <summary>A series at x = 1, 2, ..., n (epochs).</summary>
    public LinePlot Add(string name, IReadOnlyList<double> y, Rgb? color = null, bool dashed = false, bool markers = true, int thickness = 2) =>
        Add(name, Enumerable.Range(1, y.Count).Select(i => (double)i).ToArray(), y, color, dashed, markers, thickness);

    /// <summary>The dashed gray y = x line from (0, 0) to (1, 1): what random inspection order finds.</summary>
    public LinePlot AddDiagonal(string name = "random") => Add(name, [0.0, 1.0], [0.0, 1.0], Rgb.Gray, dashed: true);

    private protected override (double XLo, double XHi, double YLo, double YHi) DataRange()
    {
        double xlo = double.PositiveInfinity, xhi = double.NegativeInfinity, ylo = xlo, yhi = xhi;
        foreach (var s in series)
            for (int i = 0; i < s.X.Length; i++)
            {
                if (!double.IsFinite(s.X[i]) || !double.IsFinite(s.Y[i])) continue;
                xlo = Math.Min(xlo, s.X[i]); xhi = Math.Max(xhi, s.X[i]);
                ylo = Math.Min(ylo, s.Y[i]); yhi = Math.Max(yhi, s.Y[i]);
            }
        return double.IsInfinity(xlo) ? (double.NaN, double.NaN, double.NaN, double.NaN) : (xlo, xhi, ylo, yhi);
    }

    private protected override void DrawData(Canvas canvas, Axes axes)
    {
        foreach (var s in series)
        {
            axes.Polyline(canvas, s.X, s.Y, s.Color, s.Thickness, s.Dash);
            if (!s.Markers) continue;
            for (int i = 0; i < s.X.Length; i++) axes.Marker(canvas, s.X[i], s.Y[i], s.Color, s.Thickness);
        }
    }

    private protected override IReadOnlyList<LegendEntry> LegendEntries() =>
        series.Where(s => s.Name.Length > 0)
              .Select(s => new LegendEntry(s.Name, s.Color, s.Markers ? LegendKind.LineWithMarker : LegendKind.Line, s.Thickness, s.Dash))
              .ToList();
}
