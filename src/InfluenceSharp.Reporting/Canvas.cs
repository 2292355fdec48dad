namespace InfluenceSharp.Reporting;

public readonly record struct PixelRect(int X, int Y, int Width, int Height)
{
    public int Right => X + Width;
    public int Bottom => Y + Height;
    public bool Contains(int x, int y) => x >= X && x < Right && y >= Y && y < Bottom;
}

public enum TextAlign { Left, Center, Right }

/// <summary>An 8-bit RGB raster, row-major and interleaved, with the few primitives the plots need.
/// Drawing outside the canvas (or outside <see cref="Clip"/>, when set) is silently cut off.</summary>
public sealed class Canvas
{
    private readonly byte[] data;

    public Canvas(int width, int height) : this(width, height, Rgb.White) { }

    public Canvas(int width, int height, Rgb background)
    {
        if (width <= 0 || height <= 0) throw new ArgumentException($"canvas size must be positive, got {width}x{height}");
        Width = width; Height = height; Background = background;
        data = new byte[checked(width * height * 3)];
        for (int i = 0; i < data.Length; i += 3) { data[i] = background.R; data[i + 1] = background.G; data[i + 2] = background.B; }
    }

    public int Width { get; }
    public int Height { get; }
    public Rgb Background { get; }

    /// <summary>RGB bytes, row after row.</summary>
    public ReadOnlySpan<byte> Pixels => data;

    /// <summary>When set, drawing only touches pixels inside this rectangle.</summary>
    public PixelRect? Clip { get; set; }

    public Rgb this[int x, int y]
    {
        get
        {
            if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) throw new ArgumentOutOfRangeException($"({x}, {y}) is outside {Width}x{Height}");
            int i = (y * Width + x) * 3;
            return new Rgb(data[i], data[i + 1], data[i + 2]);
        }
        set => SetPixel(x, y, value);
    }

    public void SetPixel(int x, int y, Rgb c, double alpha = 1)
    {
        if ((uint)x >= (uint)Width || (uint)y >= (uint)Height) return;
        if (Clip is PixelRect r && !r.Contains(x, y)) return;
        int i = (y * Width + x) * 3;
        if (alpha < 1) c = c.Over(new Rgb(data[i], data[i + 1], data[i + 2]), alpha);
        data[i] = c.R; data[i + 1] = c.G; data[i + 2] = c.B;
    }

    public void FillRect(int x, int y, int width, int height, Rgb c, double alpha = 1)
    {
        int x0 = Math.Max(x, 0), y0 = Math.Max(y, 0);
        int x1 = Math.Min(x + width, Width), y1 = Math.Min(y + height, Height);
        for (int yy = y0; yy < y1; yy++)
            for (int xx = x0; xx < x1; xx++) SetPixel(xx, yy, c, alpha);
    }

    /// <summary>An outline drawn inside the rectangle.</summary>
    public void DrawRect(int x, int y, int width, int height, Rgb c, int thickness = 1)
    {
        thickness = Math.Clamp(thickness, 1, Math.Max(1, Math.Min(width, height) / 2));
        FillRect(x, y, width, thickness, c);
        FillRect(x, y + height - thickness, width, thickness, c);
        FillRect(x, y + thickness, thickness, height - 2 * thickness, c);
        FillRect(x + width - thickness, y + thickness, thickness, height - 2 * thickness, c);
    }

    /// <summary>A straight line, <paramref name="thickness"/> pixels wide (1-3). With dash &gt; 0 it
    /// alternates dash pixels drawn and dash pixels skipped.</summary>
    public void DrawLine(int x0, int y0, int x1, int y1, Rgb c, int thickness = 1, int dash = 0)
    {
        int phase = 0;
        DrawSegment(x0, y0, x1, y1, c, thickness, dash, ref phase);
    }

    /// <summary>Connected line segments; a dash pattern runs on across the joints.</summary>
    public void DrawPolyline(ReadOnlySpan<(int X, int Y)> points, Rgb c, int thickness = 1, int dash = 0)
    {
        int phase = 0;
        if (points.Length == 1) DrawSegment(points[0].X, points[0].Y, points[0].X, points[0].Y, c, thickness, 0, ref phase);
        for (int i = 1; i < points.Length; i++)
            DrawSegment(points[i - 1].X, points[i - 1].Y, points[i].X, points[i].Y, c, thickness, dash, ref phase);
    }

    private void DrawSegment(int x0, int y0, int x1, int y1, Rgb c, int thickness, int dash, ref int phase)
    {
        thickness = Math.Clamp(thickness, 1, 3);
        int lo = -(thickness - 1) / 2, hi = lo + thickness;
        // Bresenham; each step stamps a thickness x thickness square.
        int dx = Math.Abs(x1 - x0), dy = -Math.Abs(y1 - y0);
        int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
        while (true)
        {
            if (dash <= 0 || (phase / dash) % 2 == 0)
                for (int oy = lo; oy < hi; oy++)
                    for (int ox = lo; ox < hi; ox++) SetPixel(x0 + ox, y0 + oy, c);
            phase++;
            if (x0 == x1 && y0 == y1) break;
            int e2 = 2 * err;
            if (e2 >= dy) { err += dy; x0 += sx; }
            if (e2 <= dx) { err += dx; y0 += sy; }
        }
        phase--;   // the joint pixel is shared with the next segment
    }

    /// <summary>Size in pixels of (possibly multi-line) text: the width of the widest line, and the
    /// height from the top of the first line to the bottom of the last line's descenders.</summary>
    public static (int Width, int Height) MeasureText(string text, int scale = 1)
    {
        var lines = text.Split('\n');
        int w = lines.Max(l => BitmapFont.LineWidth(l));
        int h = (lines.Length - 1) * BitmapFont.LineHeight + BitmapFont.GlyphHeight;
        return (w * scale, h * scale);
    }

    /// <summary>Text height from the top of a capital to the baseline, at a scale.</summary>
    public static int CapHeight(int scale = 1) => BitmapFont.CapHeight * scale;

    /// <summary>Distance between baselines of consecutive lines, at a scale.</summary>
    public static int LineHeight(int scale = 1) => BitmapFont.LineHeight * scale;

    /// <summary>Draws text with the built-in font; (x, y) is the top of the capitals of the first line
    /// at its left end, centre or right end per <paramref name="align"/>. '\n' starts a new line.
    /// Returns the width of the widest line.</summary>
    public int DrawText(int x, int y, string text, Rgb c, int scale = 1, TextAlign align = TextAlign.Left)
    {
        scale = Math.Max(1, scale);
        int widest = 0;
        foreach (var line in text.Split('\n'))
        {
            int w = BitmapFont.LineWidth(line) * scale;
            widest = Math.Max(widest, w);
            int cx = align switch { TextAlign.Center => x - w / 2, TextAlign.Right => x - w, _ => x };
            foreach (char ch in line)
            {
                int gx = cx;
                BitmapFont.Render(ch, (col, row) => FillRect(gx + col * scale, y + row * scale, scale, scale, c));
                cx += BitmapFont.Advance(ch) * scale;
            }
            y += BitmapFont.LineHeight * scale;
        }
        return widest;
    }

    /// <summary>One line of text turned a quarter turn counter-clockwise (read bottom to top), centred
    /// on (cx, cy): the usual y-axis label.</summary>
    public void DrawTextVertical(int cx, int cy, string text, Rgb c, int scale = 1)
    {
        scale = Math.Max(1, scale);
        int w = BitmapFont.LineWidth(text) * scale, h = BitmapFont.CapHeight * scale;
        // Unrotated, glyph pixel (u, v) with u along the line and v down; rotated, u runs upwards
        // from the bottom and v runs rightwards, so the tops of the letters face left.
        int left = cx - h / 2, bottom = cy + w / 2;
        int u0 = 0;
        foreach (char ch in text)
        {
            int gu = u0;
            BitmapFont.Render(ch, (col, row) => FillRect(left + row * scale, bottom - (gu + col + 1) * scale, scale, scale, c));
            u0 += BitmapFont.Advance(ch);
        }
    }

    /// <summary>Copies a channel-major image (C x H x W bytes, C = 1 gray or 3 RGB, as in CIFAR
    /// and the data sets here) with its top-left at (x, y), each pixel a scale x scale block.</summary>
    public void DrawImage(int x, int y, ReadOnlySpan<byte> pixels, int channels, int height, int width, int scale = 1)
    {
        if (channels is not (1 or 3)) throw new ArgumentException($"images must have 1 or 3 channels, got {channels}");
        if (pixels.Length != channels * height * width)
            throw new ArgumentException($"{pixels.Length} bytes do not hold a {channels}x{height}x{width} image");
        scale = Math.Max(1, scale);
        int plane = height * width;
        for (int r = 0; r < height; r++)
            for (int col = 0; col < width; col++)
            {
                int i = r * width + col;
                var px = channels == 1 ? new Rgb(pixels[i], pixels[i], pixels[i]) : new Rgb(pixels[i], pixels[plane + i], pixels[2 * plane + i]);
                FillRect(x + col * scale, y + r * scale, scale, scale, px);
            }
    }

    public byte[] ToPng() => PngWriter.Encode(data, Width, Height, 3);

    public void SavePng(string path) => PngWriter.Save(path, data, Width, Height, 3);
}
