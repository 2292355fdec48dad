using System.Globalization;

namespace InfluenceSharp.Reporting;

/// <summary>An opaque 8-bit colour.</summary>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    public static Rgb White => new(255, 255, 255);
    public static Rgb Black => new(0, 0, 0);
    public static Rgb Gray => new(128, 128, 128);
    public static Rgb LightGray => new(225, 225, 225);
    public static Rgb Red => new(214, 39, 40);
    public static Rgb Green => new(44, 160, 44);

    /// <summary>"#rrggbb" or "rrggbb".</summary>
    public static Rgb Parse(string hex)
    {
        var h = hex.AsSpan().TrimStart('#');
        if (h.Length != 6 || !uint.TryParse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint v))
            throw new FormatException($"not a colour of the form #rrggbb: '{hex}'");
        return new Rgb((byte)(v >> 16), (byte)(v >> 8), (byte)v);
    }

    /// <summary>This colour painted over <paramref name="under"/> with opacity alpha in [0, 1].</summary>
    public Rgb Over(Rgb under, double alpha)
    {
        alpha = Math.Clamp(alpha, 0, 1);
        byte Mix(byte top, byte bottom) => (byte)Math.Round(top * alpha + bottom * (1 - alpha));
        return new Rgb(Mix(R, under.R), Mix(G, under.G), Mix(B, under.B));
    }

    public string ToHex() => $"#{R:x2}{G:x2}{B:x2}";

    /// <summary>Matplotlib's "tab10" cycle: distinguishable series colours.</summary>
    public static Rgb Palette(int i) => Parse(PaletteHex[((i % PaletteHex.Length) + PaletteHex.Length) % PaletteHex.Length]);

    private static readonly string[] PaletteHex =
        ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
}
