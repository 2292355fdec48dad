namespace InfluenceSharp.Features;

/// <summary>
/// Counter-based random numbers for projection matrices: entry (row, col) of a matrix is a pure
/// function of (seed, stream, row, col), computed with integer hashing (SplitMix64's finaliser) and,
/// for Gaussians, Box-Muller with the logarithm and sine/cosine written here in plain IEEE double
/// arithmetic (+, −, ×, /, √ only, all correctly rounded). The same seed therefore gives bit-identical
/// matrices in any process, on any machine and with any libtorch version, and any block of rows can
/// be generated on its own (projection chunks on the fly). torch's RNG is not used on purpose: its
/// stream may change between libtorch versions and devices.
/// </summary>
public static class CounterRandom
{
    /// <summary>SplitMix64's step and finaliser: a bijection on 64-bit integers with good avalanche.</summary>
    public static ulong Mix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>The key of one matrix: a seed and a stream id (e.g. model index, layer-name hash).</summary>
    public static ulong Key(long seed, ulong stream) => Mix(Mix((ulong)seed) ^ Mix(stream ^ 0x5851F42D4C957F2DUL));

    /// <summary>A stable 64-bit hash of a string (FNV-1a over UTF-8), for streams named by layers.</summary>
    public static ulong Hash(string s)
    {
        ulong h = 0xCBF29CE484222325UL;
        foreach (byte b in System.Text.Encoding.UTF8.GetBytes(s)) { h ^= b; h *= 0x100000001B3UL; }
        return Mix(h);
    }

    /// <summary>64 random bits for cell (row, word) of the matrix with this key.</summary>
    public static ulong At(ulong key, long row, long col) => Mix(Mix(key ^ (ulong)row) ^ (ulong)col);

    /// <summary>Fills dst (row-major [rows, cols]) with rows rowStart..rowStart+rows−1 of the
    /// unit-variance matrix of this kind (Rademacher ±1 or standard Gaussian). A row's values do not
    /// depend on how the matrix is chunked.</summary>
    public static void Fill(bool gaussian, ulong key, long rowStart, int rows, int cols, float[] dst)
    {
        if (dst.LongLength < (long)rows * cols) throw new ArgumentException("destination too small");
        void Row(int r)
        {
            var d = dst.AsSpan((int)((long)r * cols), cols);
            ulong rk = Mix(key ^ (ulong)(rowStart + r));
            if (gaussian) GaussianRow(rk, d);
            else RademacherRow(rk, d);
        }
        if ((long)rows * cols >= 1 << 16 && rows > 1) Parallel.For(0, rows, Row);
        else for (int r = 0; r < rows; r++) Row(r);
    }

    private static void RademacherRow(ulong rowKey, Span<float> d)
    {
        for (int w = 0; w * 64 < d.Length; w++)
        {
            ulong bits = Mix(rowKey ^ (ulong)w);
            // Bit set → +1f, clear → −1f, written branch-free as IEEE bits (sign | exponent of 1.0).
            var o = System.Runtime.InteropServices.MemoryMarshal.Cast<float, uint>(d.Slice(w * 64, Math.Min(64, d.Length - w * 64)));
            ulong neg = ~bits;
            for (int j = 0; j < o.Length; j++) o[j] = 0x3F800000u | ((uint)(neg >> j) & 1u) << 31;
        }
    }

    private static void GaussianRow(ulong rowKey, Span<float> d)
    {
        for (int pair = 0; 2 * pair < d.Length; pair++)
        {
            ulong h1 = Mix(rowKey ^ (ulong)(2 * pair)), h2 = Mix(rowKey ^ (ulong)(2 * pair + 1));
            var (z0, z1) = BoxMuller(h1, h2);
            d[2 * pair] = (float)z0;
            if (2 * pair + 1 < d.Length) d[2 * pair + 1] = (float)z1;
        }
    }

    /// <summary>Two independent standard normals from two 64-bit hashes: u1 ∈ (0, 1], u2 ∈ [0, 1)
    /// with 53 random bits each; r = √(−2 ln u1); (r cos 2πu2, r sin 2πu2).</summary>
    public static (double, double) BoxMuller(ulong h1, ulong h2)
    {
        const double Ulp = 1.0 / (1UL << 53);
        double u1 = ((h1 >> 11) + 1) * Ulp;
        double r = Math.Sqrt(-2.0 * DetMath.Log(u1));
        var (c, s) = DetMath.CosSin2Pi((long)(h2 >> 11));
        return (r * c, r * s);
    }
}

/// <summary>Logarithm and sine/cosine from basic IEEE operations only, so that their results do not
/// depend on the platform's math library (Math.Log / Math.Cos may differ in the last bit between
/// C runtimes). Accurate to a few ulp, far beyond what float32 projection entries need.</summary>
public static class DetMath
{
    private const double Ln2 = 0.6931471805599453094172321;
    private const double Sqrt2 = 1.4142135623730950488016887;
    private const double TwoPi = 6.283185307179586476925287;

    /// <summary>Natural logarithm of a positive, normal, finite double.</summary>
    public static double Log(double x)
    {
        if (!(x > 0) || double.IsInfinity(x) || !double.IsNormal(x)) throw new ArgumentOutOfRangeException(nameof(x), x, "positive normal finite values only");
        long bits = BitConverter.DoubleToInt64Bits(x);
        int e = (int)((bits >> 52) & 0x7FF) - 1023;
        double m = BitConverter.Int64BitsToDouble((bits & 0x000FFFFFFFFFFFFFL) | 0x3FF0000000000000L);   // [1, 2)
        if (m > Sqrt2) { m *= 0.5; e++; }                                                               // [√½, √2]
        // log m = 2 atanh(s), s = (m−1)/(m+1), |s| ≤ 0.1716: the series to s^21 is exact to ~1e-19.
        double s = (m - 1) / (m + 1), s2 = s * s;
        double t = 1.0 / 21;
        t = t * s2 + 1.0 / 19; t = t * s2 + 1.0 / 17; t = t * s2 + 1.0 / 15; t = t * s2 + 1.0 / 13;
        t = t * s2 + 1.0 / 11; t = t * s2 + 1.0 / 9; t = t * s2 + 1.0 / 7; t = t * s2 + 1.0 / 5;
        t = t * s2 + 1.0 / 3; t = t * s2 + 1.0;
        return e * Ln2 + 2 * s * t;
    }

    /// <summary>(cos 2πu, sin 2πu) for u = k·2⁻⁵³, 0 ≤ k &lt; 2⁵³: reduced exactly to the nearest
    /// quarter turn, then Taylor series on [−π/4, π/4].</summary>
    public static (double Cos, double Sin) CosSin2Pi(long k)
    {
        long q = (k + (1L << 50)) >> 51;                       // round(4u)
        double t = (k - (q << 51)) * (1.0 / (1UL << 53));      // u − q/4, exact, in [−1/8, 1/8]
        double x = TwoPi * t, x2 = x * x;
        // Horner from the top: sin x = x (1 − x²/3! + x⁴/5! − … + x¹⁶/17!).
        double s = 1.0 / 355687428096000.0;                    // 1/17!
        s = 1.0 / 1307674368000.0 - x2 * s;                    // 1/15!
        s = 1.0 / 6227020800.0 - x2 * s;                       // 1/13!
        s = 1.0 / 39916800.0 - x2 * s;                         // 1/11!
        s = 1.0 / 362880.0 - x2 * s;                           // 1/9!
        s = 1.0 / 5040.0 - x2 * s;                             // 1/7!
        s = 1.0 / 120.0 - x2 * s;                              // 1/5!
        s = 1.0 / 6.0 - x2 * s;                                // 1/3!
        s = 1.0 - x2 * s;
        double sin = x * s;
        double c = 1.0 / 6402373705728000.0;                   // 1/18!
        c = 1.0 / 20922789888000.0 - x2 * c;                   // 1/16!
        c = 1.0 / 87178291200.0 - x2 * c;                      // 1/14!
        c = 1.0 / 479001600.0 - x2 * c;                        // 1/12!
        c = 1.0 / 3628800.0 - x2 * c;                          // 1/10!
        c = 1.0 / 40320.0 - x2 * c;                            // 1/8!
        c = 1.0 / 720.0 - x2 * c;                              // 1/6!
        c = 1.0 / 24.0 - x2 * c;                               // 1/4!
        c = 0.5 - x2 * c;                                      // 1/2!
        double cos = 1.0 - x2 * c;
        return (q & 3) switch
        {
            0 => (cos, sin),
            1 => (-sin, cos),
            2 => (-cos, -sin),
            _ => (sin, -cos),
        };
    }
}
