using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Reporting;

public class CanvasTests
{
    static int CountNot(Canvas c, Rgb bg, PixelRect? within = null)
    {
        var r = within ?? new PixelRect(0, 0, c.Width, c.Height);
        int n = 0;
        for (int y = r.Y; y < r.Bottom; y++)
            for (int x = r.X; x < r.Right; x++) if (c[x, y] != bg) n++;
        return n;
    }

    [Fact]
    public void ToPngDecodesToTheCanvasPixels()
    {
        var c = new Canvas(31, 17, new Rgb(10, 20, 30));
        var rng = TestSeed.Random();
        for (int i = 0; i < 50; i++) c.SetPixel(rng.Next(31), rng.Next(17), new Rgb((byte)rng.Next(256), (byte)rng.Next(256), (byte)rng.Next(256)));
        var img = PngTestDecoder.Decode(c.ToPng());
        Assert.Equal((31, 17, 3), (img.Width, img.Height, img.Channels));
        Assert.True(c.Pixels.SequenceEqual(img.Pixels));
    }

    [Fact]
    public void DrawImageBlitsChannelMajorPixelsScaled()
    {
        var rng = TestSeed.Random();
        var rgb = new byte[3 * 4 * 5]; rng.NextBytes(rgb);
        var c = new Canvas(40, 40);
        c.DrawImage(3, 2, rgb, 3, 4, 5, scale: 3);
        for (int r = 0; r < 4; r++)
            for (int col = 0; col < 5; col++)
            {
                var want = new Rgb(rgb[r * 5 + col], rgb[20 + r * 5 + col], rgb[40 + r * 5 + col]);
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++) Assert.Equal(want, c[3 + col * 3 + dx, 2 + r * 3 + dy]);
            }
        Assert.Equal(4 * 5 * 9, CountNot(c, Rgb.White, new PixelRect(3, 2, 15, 12)) + CountWhiteIn(rgb));

        var gray = new byte[2 * 2]; rng.NextBytes(gray);
        c.DrawImage(30, 30, gray, 1, 2, 2, scale: 1);
        Assert.Equal(new Rgb(gray[3], gray[3], gray[3]), c[31, 31]);
        Assert.Throws<ArgumentException>(() => c.DrawImage(0, 0, gray, 3, 2, 2));
    }

    static int CountWhiteIn(byte[] chw)
    {
        int n = 0, plane = chw.Length / 3;
        for (int i = 0; i < plane; i++) if (chw[i] == 255 && chw[plane + i] == 255 && chw[2 * plane + i] == 255) n += 9;
        return n;
    }

    [Fact]
    public void TextStaysInsideItsMeasuredBoxAndScales()
    {
        var c = new Canvas(800, 100);
        string s = "Fraction found: 0.25 (gjpqy) #1234 y=Coat";
        var (w, h) = Canvas.MeasureText(s, 2);
        int drawn = c.DrawText(10, 20, s, Rgb.Black, 2);
        Assert.Equal(w, drawn);
        int inside = CountNot(c, Rgb.White, new PixelRect(10, 20, w, h));
        Assert.True(inside > 200);
        Assert.Equal(inside, CountNot(c, Rgb.White));
        Assert.Equal(Canvas.MeasureText(s, 1).Width * 3, Canvas.MeasureText(s, 3).Width);
        // Every printable ASCII character has ink except space; others fall back to '?'.
        for (char ch = '!'; ch <= '~'; ch++) Assert.True(Canvas.MeasureText(ch.ToString()).Width > 0, $"'{ch}'");
        Assert.Equal(Canvas.MeasureText("?"), Canvas.MeasureText("\u00e9"));
    }

    [Fact]
    public void VerticalTextIsTallerThanWide()
    {
        var c = new Canvas(60, 200);
        c.DrawTextVertical(30, 100, "accuracy", Rgb.Black, 2);
        int minX = int.MaxValue, maxX = 0, minY = int.MaxValue, maxY = 0;
        for (int y = 0; y < 200; y++)
            for (int x = 0; x < 60; x++)
                if (c[x, y] != Rgb.White) { minX = Math.Min(minX, x); maxX = Math.Max(maxX, x); minY = Math.Min(minY, y); maxY = Math.Max(maxY, y); }
        Assert.True(maxY - minY > 3 * (maxX - minX));
        Assert.InRange((minY + maxY) / 2, 95, 105);
    }

    [Fact]
    public void LinesHitEndpointsHonourThicknessDashesAndClip()
    {
        var c = new Canvas(50, 50);
        c.DrawLine(2, 3, 40, 30, Rgb.Black);
        Assert.Equal(Rgb.Black, c[2, 3]);
        Assert.Equal(Rgb.Black, c[40, 30]);
        int thin = CountNot(c, Rgb.White);
        Assert.Equal(39, thin);   // Bresenham: one pixel per step along the major axis

        var thick = new Canvas(50, 50);
        thick.DrawLine(5, 25, 44, 25, Rgb.Black, thickness: 3);
        Assert.Equal(42 * 3, CountNot(thick, Rgb.White));   // square brush: ends stick out by 1

        var dashed = new Canvas(50, 50);
        dashed.DrawLine(0, 10, 39, 10, Rgb.Black, dash: 5);
        Assert.Equal(20, CountNot(dashed, Rgb.White));

        var clipped = new Canvas(50, 50) { Clip = new PixelRect(10, 10, 10, 10) };
        clipped.FillRect(0, 0, 50, 50, Rgb.Red);
        Assert.Equal(100, CountNot(clipped, Rgb.White));
    }

    [Fact]
    public void TranslucentFillBlends()
    {
        var c = new Canvas(4, 4, Rgb.White);
        c.FillRect(0, 0, 4, 4, new Rgb(0, 0, 0), 0.5);
        Assert.Equal(new Rgb(128, 128, 128), c[1, 1]);
    }
}
