using InfluenceSharp.Data;

namespace InfluenceSharp.Reporting;

/// <summary>One small image for an <see cref="ImageGrid"/>: channel-major bytes (1 x H x W gray or
/// 3 x H x W RGB), a caption of up to three lines ('\n' separates them) and an optional border colour
/// (e.g. red for a corrupted label).</summary>
public sealed record GridImage(byte[] Pixels, int Channels, int Height, int Width, string Caption = "", Rgb? Border = null)
{
    /// <summary>A copy of image <paramref name="index"/> of a data set.</summary>
    public static GridImage From(LabeledDataset data, int index, string caption = "", Rgb? border = null) =>
        new(data.DisplayPixels(index), data.DisplayChannels, data.Height, data.Width, caption, border);
}

/// <summary>Rows of captioned images, each row with a title on its left: a query and its
/// proponents and opponents, or the highest self-influence training examples.</summary>
public sealed class ImageGrid
{
    private readonly List<(string Title, GridImage[] Images)> rows = new();

    public string Title { get; set; } = "";
    /// <summary>Each image pixel becomes a Scale x Scale block.</summary>
    public int Scale { get; set; } = 3;
    /// <summary>Font scale of captions; row titles and the grid title are one larger.</summary>
    public int TextScale { get; set; } = 1;
    public int BorderWidth { get; set; } = 3;

    private static readonly Rgb Ink = new(30, 30, 30);
    private static readonly Rgb Frame = new(200, 200, 200);
    private const int Pad = 8;

    /// <summary>The images of every row, in order.</summary>
    internal IEnumerable<GridImage> Images => rows.SelectMany(r => r.Images);

    public ImageGrid AddRow(string title, IEnumerable<GridImage> images)
    {
        var imgs = images.ToArray();
        foreach (var im in imgs)
            if (im.Channels is not (1 or 3) || im.Pixels.Length != im.Channels * im.Height * im.Width)
                throw new ArgumentException($"row '{title}': {im.Pixels.Length} bytes are not a 1 or 3 channel {im.Height}x{im.Width} image");
        rows.Add((title, imgs));
        return this;
    }

    public byte[] ToPng() => Render().ToPng();
    public void SavePng(string path) => Render().SavePng(path);

    public Canvas Render()
    {
        int scale = Math.Max(1, Scale), ts = Math.Max(1, TextScale), hs = ts + 1, bw = Math.Clamp(BorderWidth, 1, 8);
        var all = rows.SelectMany(r => r.Images).ToArray();
        int imgW = all.Length == 0 ? 28 * scale : all.Max(i => i.Width) * scale;
        int imgH = all.Length == 0 ? 28 * scale : all.Max(i => i.Height) * scale;
        int boxW = imgW + 2 * bw, boxH = imgH + 2 * bw;

        // Cells are as wide as the widest caption line, but at most 2.5 images wide (longer lines are cut).
        int capW = all.Select(i => CaptionLines(i.Caption).DefaultIfEmpty("").Max(l => Canvas.MeasureText(l, ts).Width)).DefaultIfEmpty(0).Max();
        int cellW = Math.Max(boxW, Math.Min(capW, boxW * 5 / 2));
        int capLines = all.Select(i => WrappedCaption(i.Caption, cellW, ts).Length).DefaultIfEmpty(0).Max();
        int cellH = boxH + (capLines > 0 ? Pad / 2 + (capLines - 1) * Canvas.LineHeight(ts) + Canvas.CapHeight(ts) + 2 * ts : 0);

        var rowTitles = rows.Select(r => TextLayout.Wrap(r.Title, 160, hs)).ToArray();
        int titleColW = rowTitles.SelectMany(t => t).Select(l => Canvas.MeasureText(l, hs).Width).DefaultIfEmpty(0).Max();
        int cols = rows.Select(r => r.Images.Length).DefaultIfEmpty(0).Max();

        int width = Pad + (titleColW > 0 ? titleColW + 2 * Pad : 0) + Math.Max(1, cols) * (cellW + Pad);
        string[] titleLines = Title.Length == 0 ? [] : TextLayout.Wrap(Title, Math.Max(width, 400) - 2 * Pad, hs);
        width = Math.Max(width, titleLines.Select(l => Canvas.MeasureText(l, hs).Width + 2 * Pad).DefaultIfEmpty(0).Max());
        int top = Pad + (titleLines.Length > 0 ? titleLines.Length * Canvas.LineHeight(hs) + Pad : 0);
        int height = top + Math.Max(1, rows.Count) * (cellH + Pad);

        var c = new Canvas(width, height);
        int y = Pad;
        foreach (var line in titleLines)
        {
            c.DrawText(Pad, y, line, Ink, hs);
            c.DrawText(Pad + 1, y, line, Ink, hs);   // bold
            y += Canvas.LineHeight(hs);
        }
        y = top;
        for (int r = 0; r < rows.Count; r++)
        {
            var lines = rowTitles[r];
            int blockH = (lines.Length - 1) * Canvas.LineHeight(hs) + Canvas.CapHeight(hs);
            int ty = y + (boxH - blockH) / 2;
            foreach (var line in lines) { c.DrawText(Pad, ty, line, Ink, hs); ty += Canvas.LineHeight(hs); }

            int x = Pad + (titleColW > 0 ? titleColW + 2 * Pad : 0);
            foreach (var im in rows[r].Images)
            {
                int bx = x + (cellW - boxW) / 2;
                if (im.Border is Rgb b) c.FillRect(bx, y, boxW, boxH, b);
                else c.DrawRect(bx + bw - 1, y + bw - 1, imgW + 2, imgH + 2, Frame);
                // Smaller images are centred in the shared box.
                c.DrawImage(bx + bw + (imgW - im.Width * scale) / 2, y + bw + (imgH - im.Height * scale) / 2,
                            im.Pixels, im.Channels, im.Height, im.Width, scale);
                int cy = y + boxH + Pad / 2;
                foreach (var line in WrappedCaption(im.Caption, cellW, ts))
                {
                    c.DrawText(x + cellW / 2, cy, line, Ink, ts, TextAlign.Center);
                    cy += Canvas.LineHeight(ts);
                }
                x += cellW + Pad;
            }
            y += cellH + Pad;
        }
        return c;
    }

    private static string[] CaptionLines(string caption) =>
        caption.Length == 0 ? [] : caption.Split('\n').Take(3).ToArray();

    /// <summary>The caption's lines fitted to the cell: a line too wide is wrapped at spaces, a word
    /// too wide is broken between characters (long class names stay whole); at most five lines, the
    /// last cut if more would be needed.</summary>
    internal static string[] WrappedCaption(string caption, int cellW, int ts)
    {
        const int MaxLines = 5;
        var lines = new List<string>();
        foreach (var line in CaptionLines(caption))
        {
            string current = "";
            foreach (var word in line.Split(' '))
            {
                string candidate = current.Length == 0 ? word : current + " " + word;
                if (Canvas.MeasureText(candidate, ts).Width <= cellW) { current = candidate; continue; }
                if (current.Length > 0) { lines.Add(current); current = ""; }
                string rest = word;
                while (Canvas.MeasureText(rest, ts).Width > cellW && rest.Length > 1)
                {
                    int n = rest.Length - 1;
                    while (n > 1 && Canvas.MeasureText(rest[..n], ts).Width > cellW) n--;
                    lines.Add(rest[..n]);
                    rest = rest[n..];
                }
                current = rest;
            }
            lines.Add(current);
        }
        if (lines.Count <= MaxLines) return lines.ToArray();
        var kept = lines.Take(MaxLines).ToArray();
        kept[^1] = TextLayout.Truncate(string.Join(" ", lines.Skip(MaxLines - 1)), cellW, ts);
        return kept;
    }
}
