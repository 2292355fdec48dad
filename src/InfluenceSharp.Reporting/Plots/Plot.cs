namespace InfluenceSharp.Reporting;

public enum LegendPosition { Auto, UpperRight, UpperLeft, LowerRight, LowerLeft, None }

/// <summary>What every chart shares: size, title, axis labels, ticks, grid and legend. Subclasses
/// supply the data range and draw the data; <see cref="Render"/> lays out the rest.</summary>
public abstract class Plot
{
    public string Title { get; set; } = "";
    public string XLabel { get; set; } = "";
    public string YLabel { get; set; } = "";
    public int Width { get; set; } = 900;
    public int Height { get; set; } = 560;
    /// <summary>Axis limits; null means fitted to the data.</summary>
    public double? XMin { get; set; }
    public double? XMax { get; set; }
    public double? YMin { get; set; }
    public double? YMax { get; set; }
    /// <summary>Integer scale of the 5x7 font for labels, ticks and legend; the title is one larger
    /// when it fits.</summary>
    public int TextScale { get; set; } = 2;
    public bool Grid { get; set; } = true;
    public LegendPosition Legend { get; set; } = LegendPosition.Auto;

    private protected static readonly Rgb Ink = new(30, 30, 30);
    private static readonly Rgb GridColor = new(228, 228, 228);
    private const int Gap = 8, TickLength = 5;

    /// <summary>The data limits before padding: (x lo, x hi, y lo, y hi); NaN where there is no data.</summary>
    private protected abstract (double XLo, double XHi, double YLo, double YHi) DataRange();
    /// <summary>Fraction of the span added on each side of the fitted range (x, y).</summary>
    private protected virtual (double X, double Y) Padding => (0.03, 0.05);
    /// <summary>Whether a fitted y range starts exactly at zero (counts, bar heights).</summary>
    private protected virtual bool YFromZero => false;
    /// <summary>Fixed x tick positions and labels (categories), or null for numeric ticks.</summary>
    private protected virtual IReadOnlyList<(double X, string Label)>? CategoryTicks => null;
    /// <summary>The y label to show when <see cref="YLabel"/> is empty.</summary>
    private protected virtual string AutoYLabel => "";
    private protected abstract void DrawData(Canvas canvas, Axes axes);
    private protected abstract IReadOnlyList<LegendEntry> LegendEntries();

    public byte[] ToPng() => Render().ToPng();
    public void SavePng(string path) => Render().SavePng(path);

    public Canvas Render()
    {
        int ts = Math.Max(1, TextScale);
        string yLabel = YLabel.Length > 0 ? YLabel : AutoYLabel;
        var range = DataRange();
        var (xlo, xhi) = Limits(range.XLo, range.XHi, XMin, XMax, Padding.X, false);
        var (ylo, yhi) = Limits(range.YLo, range.YHi, YMin, YMax, Padding.Y, YFromZero);
        var canvas = new Canvas(Width, Height);

        // Vertical layout: title, plot area, x tick labels, x label.
        var (titleLines, titleScale) = FitTitle(Title, Width - 2 * Gap, ts);
        int top = Gap + (titleLines.Length > 0 ? titleLines.Length * Canvas.LineHeight(titleScale) + Gap : Gap);
        var cats = CategoryTicks;
        int xTickRows = cats is null ? 1 : cats.Max(c => c.Label.Split('\n').Length);
        int bottom = TickLength + Gap / 2 + (xTickRows - 1) * Canvas.LineHeight(ts) + Canvas.CapHeight(ts) + Gap +
                     (XLabel.Length > 0 ? Canvas.CapHeight(ts) + 2 * Gap : 0);
        int plotH = Math.Max(20, Height - top - bottom);
        var (yTicks, yStep) = Ticks.Nice(ylo, yhi, Math.Clamp(plotH / (Canvas.LineHeight(ts) * 3), 3, 10));
        var yLabels = Ticks.Labels(yTicks, yStep);

        // Horizontal layout: y label, y tick labels, plot area, half the last x tick label.
        int yLabelW = yLabels.Length == 0 ? 0 : yLabels.Max(l => Canvas.MeasureText(l, ts).Width);
        int left = Gap + (yLabel.Length > 0 ? Canvas.CapHeight(ts) + 2 * Gap : 0) + yLabelW + Gap / 2 + TickLength;
        int right = Gap * 3;
        int plotW = Math.Max(20, Width - left - right);
        var area = new PixelRect(left, top, plotW, plotH);
        var axes = new Axes(area, xlo, xhi, ylo, yhi);

        var xTicks = cats is not null ? cats.Where(c => c.X >= xlo && c.X <= xhi).ToArray() : NumericXTicks(xlo, xhi, plotW, ts);

        canvas.Clip = area;
        DrawData(canvas, axes);
        canvas.Clip = null;

        var entries = Legend == LegendPosition.None ? [] : LegendEntries();
        PixelRect? legendBox = entries.Count > 0 ? PlaceLegend(canvas, area, entries, ts) : null;

        // Grid lines go only on untouched pixels, so they appear behind the data drawn above.
        if (Grid)
        {
            foreach (var v in yTicks) BehindLine(canvas, area, null, (int)Math.Round(axes.PY(v)));
            if (cats is null) foreach (var (x, _) in xTicks) BehindLine(canvas, area, (int)Math.Round(axes.PX(x)), null);
        }

        canvas.DrawRect(area.X - 1, area.Y - 1, area.Width + 2, area.Height + 2, Ink);
        for (int i = 0; i < yTicks.Length; i++)
        {
            int py = (int)Math.Round(axes.PY(yTicks[i]));
            canvas.DrawLine(area.X - 1 - TickLength, py, area.X - 2, py, Ink);
            canvas.DrawText(area.X - 1 - TickLength - Gap / 2, py - Canvas.CapHeight(ts) / 2, yLabels[i], Ink, ts, TextAlign.Right);
        }
        foreach (var (x, label) in xTicks)
        {
            int px = (int)Math.Round(axes.PX(x));
            if (cats is null) canvas.DrawLine(px, area.Bottom + 1, px, area.Bottom + TickLength, Ink);
            canvas.DrawText(px, area.Bottom + TickLength + Gap / 2, label, Ink, ts, TextAlign.Center);
        }
        if (XLabel.Length > 0)
            canvas.DrawText(area.X + area.Width / 2, Height - Gap - Canvas.CapHeight(ts), XLabel, Ink, ts, TextAlign.Center);
        if (yLabel.Length > 0)
            canvas.DrawTextVertical(Gap + Canvas.CapHeight(ts) / 2, area.Y + area.Height / 2, yLabel, Ink, ts);
        int ty = Gap;
        foreach (var line in titleLines)
        {
            // Drawn twice one pixel apart: a cheap bold face that sets the title apart.
            canvas.DrawText(Width / 2, ty, line, Ink, titleScale, TextAlign.Center);
            canvas.DrawText(Width / 2 + 1, ty, line, Ink, titleScale, TextAlign.Center);
            ty += Canvas.LineHeight(titleScale);
        }

        if (legendBox is PixelRect box) DrawLegend(canvas, box, entries, ts);
        return canvas;
    }

    private static (double Lo, double Hi) Limits(double lo, double hi, double? min, double? max, double pad, bool fromZero)
    {
        if (double.IsNaN(lo) || double.IsNaN(hi)) (lo, hi) = (0, 1);
        if (fromZero) { lo = Math.Min(lo, 0); hi = Math.Max(hi, 0); }
        var (plo, phi) = Ticks.Pad(lo, hi, pad);
        if (fromZero && lo >= 0) plo = 0;
        if (fromZero && hi <= 0) phi = 0;
        double l = min ?? plo, h = max ?? phi;
        if (!(h > l)) (l, h) = Ticks.Pad(l, l, 0);
        return (l, h);
    }

    /// <summary>Numeric x ticks, thinned until their labels no longer touch.</summary>
    private static (double X, string Label)[] NumericXTicks(double lo, double hi, int plotW, int ts)
    {
        for (int target = Math.Clamp(plotW / 110, 2, 12); ; target--)
        {
            var (vals, step) = Ticks.Nice(lo, hi, target);
            var ticks = vals.Zip(Ticks.Labels(vals, step)).ToArray();
            int widest = ticks.Length == 0 ? 0 : ticks.Max(t => Canvas.MeasureText(t.Second, ts).Width);
            double spacing = ticks.Length > 1 ? step / (hi - lo) * plotW : double.MaxValue;
            if (spacing > widest + 4 * ts || target <= 2) return ticks;
        }
    }

    private static (string[] Lines, int Scale) FitTitle(string title, int width, int ts)
    {
        if (title.Length == 0) return ([], ts);
        if (Canvas.MeasureText(title, ts + 1).Width <= width && !title.Contains('\n')) return ([title], ts + 1);
        return (TextLayout.Wrap(title, width, ts), ts);
    }

    private static void BehindLine(Canvas c, PixelRect area, int? x, int? y)
    {
        if (x is int px)
        {
            if (px < area.X || px >= area.Right) return;
            for (int py = area.Y; py < area.Bottom; py++) if (c[px, py] == c.Background) c[px, py] = GridColor;
        }
        else if (y is int py)
        {
            if (py < area.Y || py >= area.Bottom) return;
            for (int px2 = area.X; px2 < area.Right; px2++) if (c[px2, py] == c.Background) c[px2, py] = GridColor;
        }
    }

    private const int Swatch = 28;

    private static (int W, int H) LegendSize(IReadOnlyList<LegendEntry> entries, int ts) =>
        (Gap + Swatch + Gap + entries.Max(e => Canvas.MeasureText(e.Name, ts).Width) + Gap,
         Gap + entries.Count * Canvas.LineHeight(ts) - (Canvas.LineHeight(ts) - Canvas.CapHeight(ts)) + Gap);

    /// <summary>The requested corner, or in Auto mode the corner that hides the fewest drawn data pixels.</summary>
    private PixelRect PlaceLegend(Canvas c, PixelRect area, IReadOnlyList<LegendEntry> entries, int ts)
    {
        var (w, h) = LegendSize(entries, ts);
        PixelRect At(LegendPosition p) => p switch
        {
            LegendPosition.UpperLeft => new(area.X + Gap, area.Y + Gap, w, h),
            LegendPosition.LowerRight => new(area.Right - Gap - w, area.Bottom - Gap - h, w, h),
            LegendPosition.LowerLeft => new(area.X + Gap, area.Bottom - Gap - h, w, h),
            _ => new(area.Right - Gap - w, area.Y + Gap, w, h),
        };
        if (Legend != LegendPosition.Auto) return At(Legend);
        PixelRect best = At(LegendPosition.UpperRight);
        long bestInk = long.MaxValue;
        foreach (var p in new[] { LegendPosition.UpperRight, LegendPosition.UpperLeft, LegendPosition.LowerRight, LegendPosition.LowerLeft })
        {
            var r = At(p);
            long ink = 0;
            for (int y = Math.Max(r.Y, 0); y < Math.Min(r.Bottom, c.Height); y++)
                for (int x = Math.Max(r.X, 0); x < Math.Min(r.Right, c.Width); x++)
                    if (c[x, y] != c.Background) ink++;
            if (ink < bestInk) { bestInk = ink; best = r; }
        }
        return best;
    }

    private static void DrawLegend(Canvas c, PixelRect box, IReadOnlyList<LegendEntry> entries, int ts)
    {
        c.FillRect(box.X, box.Y, box.Width, box.Height, Rgb.White, 0.88);
        c.DrawRect(box.X, box.Y, box.Width, box.Height, new Rgb(190, 190, 190));
        int y = box.Y + Gap;
        foreach (var e in entries)
        {
            int mid = y + Canvas.CapHeight(ts) / 2, sx = box.X + Gap;
            switch (e.Kind)
            {
                case LegendKind.Box:
                    c.FillRect(sx, y, Swatch, Canvas.CapHeight(ts), e.Color, e.FillAlpha);
                    c.DrawRect(sx, y, Swatch, Canvas.CapHeight(ts), e.Color, 2);
                    break;
                default:
                    c.DrawLine(sx, mid, sx + Swatch - 1, mid, e.Color, e.Thickness, e.Dash);
                    if (e.Kind == LegendKind.LineWithMarker) Axes.DrawMarker(c, sx + Swatch / 2, mid, e.Color, e.Thickness);
                    break;
            }
            c.DrawText(sx + Swatch + Gap, y, e.Name, Ink, ts);
            y += Canvas.LineHeight(ts);
        }
    }
}

internal enum LegendKind { Line, LineWithMarker, Box }

internal sealed record LegendEntry(string Name, Rgb Color, LegendKind Kind, int Thickness = 2, int Dash = 0, double FillAlpha = 1);

/// <summary>Maps data coordinates to pixels of the plot area (y up) and draws clipped shapes.</summary>
internal sealed class Axes
{
    public Axes(PixelRect area, double xlo, double xhi, double ylo, double yhi)
    {
        Area = area; XLo = xlo; XHi = xhi; YLo = ylo; YHi = yhi;
    }

    public PixelRect Area { get; }
    public double XLo { get; }
    public double XHi { get; }
    public double YLo { get; }
    public double YHi { get; }

    public double PX(double x) => Area.X + (x - XLo) / (XHi - XLo) * (Area.Width - 1);
    public double PY(double y) => Area.Bottom - 1 - (y - YLo) / (YHi - YLo) * (Area.Height - 1);

    /// <summary>A polyline through data points; non-finite points break it, and segments are
    /// clipped to the plot area before they are turned into pixels.</summary>
    public void Polyline(Canvas c, IReadOnlyList<double> xs, IReadOnlyList<double> ys, Rgb color, int thickness, int dash)
    {
        var run = new List<(int, int)>();
        void Flush() { if (run.Count > 0) c.DrawPolyline(run.ToArray(), color, thickness, dash); run.Clear(); }
        for (int i = 1; i < xs.Count; i++)
        {
            double ax = PX(xs[i - 1]), ay = PY(ys[i - 1]), bx = PX(xs[i]), by = PY(ys[i]);
            if (!ClipSegment(ref ax, ref ay, ref bx, ref by, out bool clippedEnd)) { Flush(); continue; }
            var a = ((int)Math.Round(ax), (int)Math.Round(ay));
            if (run.Count == 0 || run[^1] != a) { Flush(); run.Add(a); }
            run.Add(((int)Math.Round(bx), (int)Math.Round(by)));
            if (clippedEnd) Flush();
        }
        if (xs.Count == 1 && double.IsFinite(PX(xs[0])) && double.IsFinite(PY(ys[0])))
            run.Add(((int)Math.Round(PX(xs[0])), (int)Math.Round(PY(ys[0]))));
        Flush();
    }

    /// <summary>Liang-Barsky clipping to the plot area widened by a few pixels.</summary>
    private bool ClipSegment(ref double x0, ref double y0, ref double x1, ref double y1, out bool clippedEnd)
    {
        clippedEnd = false;
        if (!double.IsFinite(x0) || !double.IsFinite(y0) || !double.IsFinite(x1) || !double.IsFinite(y1)) return false;
        double xmin = Area.X - 4, xmax = Area.Right + 4, ymin = Area.Y - 4, ymax = Area.Bottom + 4;
        double dx = x1 - x0, dy = y1 - y0, t0 = 0, t1 = 1;
        foreach (var (p, q) in new[] { (-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0) })
        {
            if (p == 0) { if (q < 0) return false; continue; }
            double r = q / p;
            if (p < 0) { if (r > t1) return false; if (r > t0) t0 = r; }
            else { if (r < t0) return false; if (r < t1) t1 = r; }
        }
        clippedEnd = t1 < 1;
        (x0, y0, x1, y1) = (x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy);
        return true;
    }

    /// <summary>A filled rectangle between two data corners, clamped to the plot area.</summary>
    public PixelRect? Rect(double x0, double y0, double x1, double y1)
    {
        double l = Math.Max(Math.Min(PX(x0), PX(x1)), Area.X - 2), r = Math.Min(Math.Max(PX(x0), PX(x1)), Area.Right + 2);
        double t = Math.Max(Math.Min(PY(y0), PY(y1)), Area.Y - 2), b = Math.Min(Math.Max(PY(y0), PY(y1)), Area.Bottom + 2);
        if (!(r >= l && b >= t)) return null;
        int li = (int)Math.Round(l), ti = (int)Math.Round(t);
        return new PixelRect(li, ti, Math.Max(1, (int)Math.Round(r) - li), Math.Max(1, (int)Math.Round(b) - ti + 1));
    }

    /// <summary>A point marker at data (x, y), when it lies in the plot area.</summary>
    public void Marker(Canvas c, double x, double y, Rgb color, int thickness)
    {
        double px = PX(x), py = PY(y);
        if (px >= Area.X && px < Area.Right && py >= Area.Y && py < Area.Bottom)
            DrawMarker(c, (int)Math.Round(px), (int)Math.Round(py), color, thickness);
    }

    public static void DrawMarker(Canvas c, int x, int y, Rgb color, int thickness)
    {
        // A filled square with a white rim, so that markers stay visible where lines cross.
        int s = 1 + thickness;
        c.FillRect(x - s - 1, y - s - 1, 2 * s + 3, 2 * s + 3, Rgb.White);
        c.FillRect(x - s, y - s, 2 * s + 1, 2 * s + 1, color);
    }
}
