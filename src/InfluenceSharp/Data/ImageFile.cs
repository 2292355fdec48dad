using InfluenceSharp.Native;
using StbImageSharp;

namespace InfluenceSharp.Data;

/// <summary>
/// An image a user has, decoded to channel-major bytes [C, H, W] (the layout of
/// <see cref="ImageDataset"/>): C = 1 is luminance (0.299 R + 0.587 G + 0.114 B, rounded), C = 3 is
/// RGB; alpha is dropped. PNG (every bit depth and colour type, interlaced or not; 16-bit samples
/// keep their high byte), JPEG (baseline and progressive), BMP, GIF (the first frame), TGA, PSD and
/// HDR are decoded by StbImageSharp.
/// </summary>
public sealed record ImageFile(int Width, int Height, int Channels, byte[] Pixels)
{
    /// <summary>Files larger than this are refused before they are read.</summary>
    public const long MaxFileBytes = 256L << 20;
    /// <summary>Images with more pixels than this are refused before they are decoded.</summary>
    public const long MaxPixels = 1L << 28;

    /// <summary>The value at channel <paramref name="c"/>, row <paramref name="y"/>, column <paramref name="x"/>.</summary>
    public byte this[int c, int y, int x] => Pixels[(c * Height + y) * Width + x];

    /// <summary>Reads and decodes an image file into <paramref name="channels"/> channels (1 or 3).
    /// Errors (missing, not a regular file, too large, not an image, corrupt) are
    /// <see cref="InfluenceSharpException"/>s whose message starts with the path.</summary>
    public static ImageFile Load(string path, int channels) => Decode(ReadBounded(path), channels, path);

    /// <summary>Decodes an encoded image (any format of <see cref="ImageFile"/>); <paramref name="name"/>
    /// starts error messages.</summary>
    public static ImageFile Decode(byte[] encoded, int channels, string name = "image")
    {
        if (channels is not (1 or 3)) throw new ArgumentOutOfRangeException(nameof(channels), channels, "1 (gray) or 3 (RGB)");
        if (encoded.Length == 0) throw new InfluenceSharpException($"{name}: empty file");
        ImageResult image;
        try
        {
            using (var header = new MemoryStream(encoded, writable: false))
            {
                var info = ImageInfo.FromStream(header) ?? throw new InfluenceSharpException($"{name}: not an image in a known format (PNG, JPEG, BMP, GIF, TGA, PSD, HDR)");
                if (info.Width <= 0 || info.Height <= 0 || (long)info.Width * info.Height > MaxPixels)
                    throw new InfluenceSharpException($"{name}: image is {info.Width}x{info.Height}; at most {MaxPixels} pixels are decoded");
            }
            if (IsTruncatedJpeg(encoded)) throw new InfluenceSharpException($"{name}: truncated JPEG (no end-of-image marker after the last scan)");
            if (IsTruncatedPng(encoded)) throw new InfluenceSharpException($"{name}: truncated PNG (the file ends inside its data, before the end chunk): the file is cut short or damaged");
            image = ImageResult.FromMemory(encoded, ColorComponents.RedGreenBlue);
        }
        catch (InfluenceSharpException) { throw; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new InfluenceSharpException($"{name}: cannot decode the image ({Printable(e.Message)})", e);
        }
        int w = image.Width, h = image.Height, plane = w * h;
        var rgb = image.Data;
        if (rgb is null || rgb.Length < 3L * plane) throw new InfluenceSharpException($"{name}: cannot decode the image (truncated result)");
        var pixels = new byte[channels * plane];
        for (int i = 0; i < plane; i++)
        {
            byte r = rgb[3 * i], g = rgb[3 * i + 1], b = rgb[3 * i + 2];
            if (channels == 1) pixels[i] = Luminance(r, g, b);
            else { pixels[i] = r; pixels[plane + i] = g; pixels[2 * plane + i] = b; }
        }
        return new ImageFile(w, h, channels, pixels);
    }

    /// <summary>A decoder's message without the control characters (NUL bytes) some decoders leave in it.</summary>
    static string Printable(string message)
    {
        var t = new string(message.Where(c => !char.IsControl(c)).ToArray()).Trim();
        return t.Length > 0 ? t : "the decoder gave no reason";
    }

    /// <summary>A PNG whose chunks run past the end of the file before its IEND chunk: cut short.</summary>
    static bool IsTruncatedPng(byte[] b)
    {
        ReadOnlySpan<byte> signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        if (b.Length < 8 || !b.AsSpan(0, 8).SequenceEqual(signature)) return false;
        long at = 8;
        while (true)
        {
            if (at + 8 > b.Length) return true;
            long length = (uint)(b[at] << 24 | b[at + 1] << 16 | b[at + 2] << 8 | b[at + 3]);
            bool end = b[at + 4] == (byte)'I' && b[at + 5] == (byte)'E' && b[at + 6] == (byte)'N' && b[at + 7] == (byte)'D';
            at += 12 + length;
            if (at > b.Length) return true;
            if (end) return false;
        }
    }

    /// <summary>A JPEG whose last scan has no end-of-image marker (FF D9) after it: cut short, which the
    /// decoder would silently fill with grey (PIL refuses such files too). Inside entropy-coded data
    /// an FF byte is always followed by 00 or a restart marker, so FF D9 after the last start-of-scan
    /// (FF DA) is the image's end.</summary>
    static bool IsTruncatedJpeg(byte[] b)
    {
        if (b.Length < 4 || b[0] != 0xFF || b[1] != 0xD8) return false;
        int sos = -1;
        for (int i = b.Length - 2; i >= 2; i--) if (b[i] == 0xFF && b[i + 1] == 0xDA) { sos = i; break; }
        if (sos < 0) return true;
        for (int i = sos + 2; i < b.Length - 1; i++) if (b[i] == 0xFF && b[i + 1] == 0xD9) return false;
        return true;
    }

    /// <summary>This image resized to <paramref name="height"/> x <paramref name="width"/> by bilinear
    /// interpolation with half-pixel centres (torch's interpolate(mode="bilinear", align_corners=False),
    /// without antialiasing), rounded to bytes. The same size returns this image.</summary>
    public ImageFile Resize(int height, int width)
    {
        if (height < 1 || width < 1) throw new ArgumentOutOfRangeException(nameof(height), "sizes must be positive");
        if (height == Height && width == Width) return this;
        var (y0, y1, fy) = Taps(Height, height);
        var (x0, x1, fx) = Taps(Width, width);
        var dst = new byte[Channels * height * width];
        for (int c = 0; c < Channels; c++)
        {
            int src = c * Height * Width, o = c * height * width;
            for (int y = 0; y < height; y++)
            {
                int r0 = src + y0[y] * Width, r1 = src + y1[y] * Width;
                float wy = fy[y];
                for (int x = 0; x < width; x++)
                {
                    float top = Pixels[r0 + x0[x]] + (Pixels[r0 + x1[x]] - Pixels[r0 + x0[x]]) * fx[x];
                    float bottom = Pixels[r1 + x0[x]] + (Pixels[r1 + x1[x]] - Pixels[r1 + x0[x]]) * fx[x];
                    dst[o + y * width + x] = (byte)Math.Clamp(MathF.Round(top + (bottom - top) * wy), 0, 255);
                }
            }
        }
        return new ImageFile(width, height, Channels, dst);
    }

    /// <summary>For each output coordinate along an axis: the two source taps and the second's weight.</summary>
    private static (int[] Lo, int[] Hi, float[] Frac) Taps(int inSize, int outSize)
    {
        var lo = new int[outSize];
        var hi = new int[outSize];
        var frac = new float[outSize];
        double scale = (double)inSize / outSize;
        for (int i = 0; i < outSize; i++)
        {
            double s = Math.Max(0, (i + 0.5) * scale - 0.5);
            int a = Math.Min((int)s, inSize - 1);
            lo[i] = a; hi[i] = Math.Min(a + 1, inSize - 1); frac[i] = (float)(s - a);
        }
        return (lo, hi, frac);
    }

    /// <summary>The image's size and whether it is grey (1) or colour (3) as its header says, without
    /// decoding it; null when the header is not an image's.</summary>
    public static (int Width, int Height, int Channels)? Probe(string path)
    {
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var info = ImageInfo.FromStream(fs);
            if (info is not { } i) return null;
            return (i.Width, i.Height, i.ColorComponents is ColorComponents.Grey or ColorComponents.GreyAlpha ? 1 : 3);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not InfluenceSharpException)
        {
            return null;
        }
    }

    /// <summary>ITU-R BT.601 luma, rounded: the gray value of an RGB pixel (gray stays gray).</summary>
    public static byte Luminance(byte r, byte g, byte b) => (byte)Math.Clamp(Math.Round(0.299 * r + 0.587 * g + 0.114 * b), 0, 255);

    /// <summary>The file's bytes, refusing what is not a regular file or is over <see cref="MaxFileBytes"/>
    /// before reading it, and never reading more than that even if the size changes meanwhile.</summary>
    private static byte[] ReadBounded(string path)
    {
        if (Directory.Exists(path)) throw new InfluenceSharpException($"{path}: is a directory, not an image file");
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        long size;
        switch (FileType.IsRegularFile(path, out size))
        {
            case false: throw new InfluenceSharpException($"{path}: not a regular file (a device, pipe or socket); give an image file");
            case null: size = new FileInfo(path).Length; break;
        }
        if (size > MaxFileBytes) throw new InfluenceSharpException($"{path}: {size} bytes; image files over {MaxFileBytes >> 20} MiB are refused");
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            // Read one byte more than the size: a file that yields more than its size is not a plain file.
            var buffer = new byte[size + 1];
            int n = 0, r;
            while (n < buffer.Length && (r = fs.Read(buffer, n, buffer.Length - n)) > 0) n += r;
            if (n > size) throw new InfluenceSharpException($"{path}: yields more bytes than its size ({size}); not a regular file, or it is being written");
            return buffer[..n];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e);
        }
    }
}
