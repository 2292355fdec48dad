using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
    public static ulong Mix(ulong x) => Seeds.Mix(x);

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
    /// depend on how the matrix is chunked, nor on the machine: the SIMD code (AVX-512, AVX2, NEON…)
    /// gives the same bits as the scalar code.</summary>
    public static void Fill(bool gaussian, ulong key, long rowStart, int rows, int cols, float[] dst) =>
        Fill(gaussian, key, rowStart, rows, cols, dst, FillPath.Best);

    /// <summary>Which code generates the rows: the scalar reference, a fixed vector width (run in
    /// software where the hardware lacks it, still bit-identical), or the widest accelerated one.</summary>
    internal enum FillPath { Scalar, Vector128, Vector256, Vector512, Best }

    /// <summary>The widest vector width the hardware accelerates (Scalar where none is).</summary>
    internal static FillPath BestPath =>
        Vector512.IsHardwareAccelerated ? FillPath.Vector512
        : Vector256.IsHardwareAccelerated ? FillPath.Vector256
        : Vector128.IsHardwareAccelerated ? FillPath.Vector128
        : FillPath.Scalar;

    /// <summary><see cref="Fill(bool, ulong, long, int, int, float[])"/> through a chosen code path
    /// (tests compare the vector paths with the scalar reference bit for bit; the bench times them).</summary>
    internal static unsafe void Fill(bool gaussian, ulong key, long rowStart, int rows, int cols, float[] dst, FillPath path)
    {
        if (dst.LongLength < (long)rows * cols) throw new ArgumentException("destination too small");
        fixed (float* p = dst) Fill(gaussian, key, rowStart, rows, cols, (IntPtr)p, path);
    }

    /// <summary>Fills rows × cols floats at <paramref name="dst"/> (row-major; the caller keeps the
    /// memory alive and large enough), e.g. a CPU tensor's storage, with no host buffer in between.</summary>
    internal static unsafe void Fill(bool gaussian, ulong key, long rowStart, int rows, int cols, IntPtr dst, FillPath path = FillPath.Best)
    {
        if (path == FillPath.Best) path = BestPath;
        void Row(int r)
        {
            var d = new Span<float>((float*)dst + (long)r * cols, cols);
            ulong rk = Mix(key ^ (ulong)(rowStart + r));
            switch (path)
            {
                case FillPath.Vector512: if (gaussian) CounterRandomSimd.GaussianRow512(rk, d); else CounterRandomSimd.RademacherRow512(rk, d); break;
                case FillPath.Vector256: if (gaussian) CounterRandomSimd.GaussianRow256(rk, d); else CounterRandomSimd.RademacherRow256(rk, d); break;
                case FillPath.Vector128: if (gaussian) CounterRandomSimd.GaussianRow128(rk, d); else CounterRandomSimd.RademacherRow128(rk, d); break;
                default: if (gaussian) GaussianRow(rk, d); else RademacherRow(rk, d); break;
            }
        }
        if ((long)rows * cols >= 1 << 16 && rows > 1) Parallel.For(0, rows, Row);
        else for (int r = 0; r < rows; r++) Row(r);
    }

    /// <summary>The scalar reference for a row of Rademacher signs.</summary>
    private static void RademacherRow(ulong rowKey, Span<float> d)
    {
        for (int w = 0; w * 64 < d.Length; w++)
        {
            ulong bits = Mix(rowKey ^ (ulong)w);
            // Bit set → +1f, clear → −1f, written branch-free as IEEE bits (sign | exponent of 1.0).
            var o = MemoryMarshal.Cast<float, uint>(d.Slice(w * 64, Math.Min(64, d.Length - w * 64)));
            ulong neg = ~bits;
            for (int j = 0; j < o.Length; j++) o[j] = 0x3F800000u | ((uint)(neg >> j) & 1u) << 31;
        }
    }

    /// <summary>Columns from..d.Length−1 of a Rademacher row, as <see cref="RademacherRow"/> writes
    /// them (the tail the vector code leaves).</summary>
    internal static void RademacherTail(ulong rowKey, Span<float> d, int from)
    {
        var o = MemoryMarshal.Cast<float, uint>(d);
        ulong neg = 0;
        int word = -1;
        for (int j = from; j < o.Length; j++)
        {
            if (j >> 6 != word) { word = j >> 6; neg = ~Mix(rowKey ^ (ulong)word); }
            o[j] = 0x3F800000u | ((uint)(neg >> (j & 63)) & 1u) << 31;
        }
    }

    /// <summary>The scalar reference for a Gaussian row, from pair firstPair on (columns 2·pair and
    /// 2·pair+1 come from one Box–Muller draw; the vector code leaves the tail to this).</summary>
    internal static void GaussianRow(ulong rowKey, Span<float> d, int firstPair = 0)
    {
        for (int pair = firstPair; 2 * pair < d.Length; pair++)
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

/// <summary>The vector code of <see cref="CounterRandom.Fill(bool, ulong, long, int, int, float[])"/>:
/// the same integer hashing and the same IEEE double operations in the same order as the scalar
/// code, lane-wise (separate multiplies and adds, never fused; exact integer↔double conversions;
/// branches as selects), so every lane gives the scalar code's bits. One copy per vector width
/// (512, 256, 128 bits): the widths cannot share one generic body in .NET 10.</summary>
internal static class CounterRandomSimd
{
    // ---- Vector512 (8 doubles, 16 floats per vector) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<ulong> Mix(Vector512<ulong> x)
    {
        x += Vector512.Create(0x9E3779B97F4A7C15UL);
        x = (x ^ Vector512.ShiftRightLogical(x, 30)) * Vector512.Create(0xBF58476D1CE4E5B9UL);
        x = (x ^ Vector512.ShiftRightLogical(x, 27)) * Vector512.Create(0x94D049BB133111EBUL);
        return x ^ Vector512.ShiftRightLogical(x, 31);
    }

    /// <summary>DetMath.Log, lane-wise, for positive normal finite lanes (here u1 ∈ [2⁻⁵³, 1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<double> Log(Vector512<double> x)
    {
        var bits = x.AsInt64();
        var e = (Vector512.ShiftRightLogical(bits, 52) & Vector512.Create(0x7FFL)) - Vector512.Create(1023L);
        var m = ((bits & Vector512.Create(0x000FFFFFFFFFFFFFL)) | Vector512.Create(0x3FF0000000000000L)).AsDouble();   // [1, 2)
        var big = Vector512.GreaterThan(m, Vector512.Create(DetMath.Sqrt2));
        m = Vector512.ConditionalSelect(big, m * Vector512.Create(0.5), m);
        e -= big.AsInt64();   // mask −1 → e + 1
        var one = Vector512.Create(1.0);
        var s = (m - one) / (m + one);
        var s2 = s * s;
        var t = Vector512.Create(1.0 / 21);
        t = t * s2 + Vector512.Create(1.0 / 19); t = t * s2 + Vector512.Create(1.0 / 17); t = t * s2 + Vector512.Create(1.0 / 15); t = t * s2 + Vector512.Create(1.0 / 13);
        t = t * s2 + Vector512.Create(1.0 / 11); t = t * s2 + Vector512.Create(1.0 / 9); t = t * s2 + Vector512.Create(1.0 / 7); t = t * s2 + Vector512.Create(1.0 / 5);
        t = t * s2 + Vector512.Create(1.0 / 3); t = t * s2 + one;
        return Vector512.ConvertToDouble(e) * Vector512.Create(DetMath.Ln2) + Vector512.Create(2.0) * s * t;
    }

    /// <summary>DetMath.CosSin2Pi, lane-wise, for 0 ≤ k &lt; 2⁵³; the quadrant switch becomes a
    /// select (swap cos and sin on odd quadrants) and sign flips (as unary minus does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CosSin2Pi(Vector512<long> k, out Vector512<double> cosOut, out Vector512<double> sinOut)
    {
        var q = Vector512.ShiftRightArithmetic(k + Vector512.Create(1L << 50), 51);   // round(4u)
        var t = Vector512.ConvertToDouble(k - Vector512.ShiftLeft(q, 51)) * Vector512.Create(1.0 / (1UL << 53));   // exact
        var x = Vector512.Create(DetMath.TwoPi) * t;
        var x2 = x * x;
        var s = Vector512.Create(1.0 / 355687428096000.0);
        s = Vector512.Create(1.0 / 1307674368000.0) - x2 * s;
        s = Vector512.Create(1.0 / 6227020800.0) - x2 * s;
        s = Vector512.Create(1.0 / 39916800.0) - x2 * s;
        s = Vector512.Create(1.0 / 362880.0) - x2 * s;
        s = Vector512.Create(1.0 / 5040.0) - x2 * s;
        s = Vector512.Create(1.0 / 120.0) - x2 * s;
        s = Vector512.Create(1.0 / 6.0) - x2 * s;
        s = Vector512.Create(1.0) - x2 * s;
        var sin = x * s;
        var c = Vector512.Create(1.0 / 6402373705728000.0);
        c = Vector512.Create(1.0 / 20922789888000.0) - x2 * c;
        c = Vector512.Create(1.0 / 87178291200.0) - x2 * c;
        c = Vector512.Create(1.0 / 479001600.0) - x2 * c;
        c = Vector512.Create(1.0 / 3628800.0) - x2 * c;
        c = Vector512.Create(1.0 / 40320.0) - x2 * c;
        c = Vector512.Create(1.0 / 720.0) - x2 * c;
        c = Vector512.Create(1.0 / 24.0) - x2 * c;
        c = Vector512.Create(0.5) - x2 * c;
        var cos = Vector512.Create(1.0) - x2 * c;
        // q mod 4 = 0: (cos, sin); 1: (−sin, cos); 2: (−cos, −sin); 3: (sin, −cos).
        var swap = Vector512.Equals(q & Vector512<long>.One, Vector512<long>.One).AsDouble();
        var negCos = Vector512.ShiftLeft((q + Vector512<long>.One) & Vector512.Create(2L), 62);   // q mod 4 ∈ {1, 2}
        var negSin = Vector512.ShiftLeft(q & Vector512.Create(2L), 62);   // q mod 4 ∈ {2, 3}
        cosOut = (Vector512.ConditionalSelect(swap, sin, cos).AsInt64() ^ negCos).AsDouble();
        sinOut = (Vector512.ConditionalSelect(swap, cos, sin).AsInt64() ^ negSin).AsDouble();
    }

    /// <summary>CounterRandom.BoxMuller, lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BoxMuller(Vector512<ulong> h1, Vector512<ulong> h2, out Vector512<double> z0, out Vector512<double> z1)
    {
        var u1 = Vector512.ConvertToDouble(Vector512.ShiftRightLogical(h1, 11) + Vector512<ulong>.One) * Vector512.Create(1.0 / (1UL << 53));
        var r = Vector512.Sqrt(Vector512.Create(-2.0) * Log(u1));
        CosSin2Pi(Vector512.ShiftRightLogical(h2, 11).AsInt64(), out var c, out var s);
        z0 = r * c;
        z1 = r * s;
    }

    /// <summary>BoxMuller over whole vectors of given hashes (lengths a multiple of 8), for tests
    /// that aim at edge cases (u1 = 1, m next to √2, quarter-turn boundaries).</summary>
    internal static void BoxMuller512(ReadOnlySpan<ulong> h1, ReadOnlySpan<ulong> h2, Span<double> z0, Span<double> z1)
    {
        for (int i = 0; i + Vector512<ulong>.Count <= h1.Length; i += Vector512<ulong>.Count)
        {
            BoxMuller(Vector512.Create(h1.Slice(i)), Vector512.Create(h2.Slice(i)), out var a, out var b);
            a.CopyTo(z0.Slice(i));
            b.CopyTo(z1.Slice(i));
        }
    }

    /// <summary>Gaussian row: 8 Box–Muller pairs (16 columns) per step, the tail in scalar code.</summary>
    internal static void GaussianRow512(ulong rowKey, Span<float> d)
    {
        const int Pairs = 8;
        int blocks = d.Length / (2 * Pairs);
        ref float dst = ref MemoryMarshal.GetReference(d);
        var rk = Vector512.Create(rowKey);
        var evens = Vector512.Create(0UL, 2UL, 4UL, 6UL, 8UL, 10UL, 12UL, 14UL);
        var one = Vector512<ulong>.One;
        for (int b = 0; b < blocks; b++)
        {
            var col = Vector512.Create((ulong)(2 * Pairs * b)) + evens;   // 2·pair
            var h1 = Mix(rk ^ col);
            var h2 = Mix(rk ^ (col + one));
            BoxMuller(h1, h2, out var z0, out var z1);
            var z = Vector512.Narrow(z0, z1);   // [z0 of each pair, z1 of each pair]
            Vector512.Shuffle(z, Vector512.Create(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15)).StoreUnsafe(ref dst, (nuint)(2 * Pairs * b));
        }
        CounterRandom.GaussianRow(rowKey, d, blocks * Pairs);
    }

    /// <summary>Rademacher row: one 64-bit hash per 64 columns, 16 columns per step.</summary>
    internal static void RademacherRow512(ulong rowKey, Span<float> d)
    {
        const int F = 2 * 8;
        int full = d.Length / F * F;
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(d));
        var laneBits = Vector512.Create(1u << 0, 1u << 1, 1u << 2, 1u << 3, 1u << 4, 1u << 5, 1u << 6, 1u << 7, 1u << 8, 1u << 9, 1u << 10, 1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15);
        var plusOne = Vector512.Create(0x3F800000u);
        var sign = Vector512.Create(0x80000000u);
        ulong bits = 0;
        for (int c = 0; c < full; c += F)
        {
            if ((c & 63) == 0) bits = CounterRandom.Mix(rowKey ^ (ulong)(c >> 6));
            var clear = Vector512.Equals(Vector512.Create((uint)(bits >> (c & 63))) & laneBits, Vector512<uint>.Zero);   // bit clear → −1
            (plusOne | (clear & sign)).StoreUnsafe(ref dst, (nuint)c);
        }
        CounterRandom.RademacherTail(rowKey, d, full);
    }

    // ---- Vector256 (4 doubles, 8 floats per vector) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<ulong> Mix(Vector256<ulong> x)
    {
        x += Vector256.Create(0x9E3779B97F4A7C15UL);
        x = (x ^ Vector256.ShiftRightLogical(x, 30)) * Vector256.Create(0xBF58476D1CE4E5B9UL);
        x = (x ^ Vector256.ShiftRightLogical(x, 27)) * Vector256.Create(0x94D049BB133111EBUL);
        return x ^ Vector256.ShiftRightLogical(x, 31);
    }

    /// <summary>DetMath.Log, lane-wise, for positive normal finite lanes (here u1 ∈ [2⁻⁵³, 1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<double> Log(Vector256<double> x)
    {
        var bits = x.AsInt64();
        var e = (Vector256.ShiftRightLogical(bits, 52) & Vector256.Create(0x7FFL)) - Vector256.Create(1023L);
        var m = ((bits & Vector256.Create(0x000FFFFFFFFFFFFFL)) | Vector256.Create(0x3FF0000000000000L)).AsDouble();   // [1, 2)
        var big = Vector256.GreaterThan(m, Vector256.Create(DetMath.Sqrt2));
        m = Vector256.ConditionalSelect(big, m * Vector256.Create(0.5), m);
        e -= big.AsInt64();   // mask −1 → e + 1
        var one = Vector256.Create(1.0);
        var s = (m - one) / (m + one);
        var s2 = s * s;
        var t = Vector256.Create(1.0 / 21);
        t = t * s2 + Vector256.Create(1.0 / 19); t = t * s2 + Vector256.Create(1.0 / 17); t = t * s2 + Vector256.Create(1.0 / 15); t = t * s2 + Vector256.Create(1.0 / 13);
        t = t * s2 + Vector256.Create(1.0 / 11); t = t * s2 + Vector256.Create(1.0 / 9); t = t * s2 + Vector256.Create(1.0 / 7); t = t * s2 + Vector256.Create(1.0 / 5);
        t = t * s2 + Vector256.Create(1.0 / 3); t = t * s2 + one;
        return Vector256.ConvertToDouble(e) * Vector256.Create(DetMath.Ln2) + Vector256.Create(2.0) * s * t;
    }

    /// <summary>DetMath.CosSin2Pi, lane-wise, for 0 ≤ k &lt; 2⁵³; the quadrant switch becomes a
    /// select (swap cos and sin on odd quadrants) and sign flips (as unary minus does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CosSin2Pi(Vector256<long> k, out Vector256<double> cosOut, out Vector256<double> sinOut)
    {
        var q = Vector256.ShiftRightArithmetic(k + Vector256.Create(1L << 50), 51);   // round(4u)
        var t = Vector256.ConvertToDouble(k - Vector256.ShiftLeft(q, 51)) * Vector256.Create(1.0 / (1UL << 53));   // exact
        var x = Vector256.Create(DetMath.TwoPi) * t;
        var x2 = x * x;
        var s = Vector256.Create(1.0 / 355687428096000.0);
        s = Vector256.Create(1.0 / 1307674368000.0) - x2 * s;
        s = Vector256.Create(1.0 / 6227020800.0) - x2 * s;
        s = Vector256.Create(1.0 / 39916800.0) - x2 * s;
        s = Vector256.Create(1.0 / 362880.0) - x2 * s;
        s = Vector256.Create(1.0 / 5040.0) - x2 * s;
        s = Vector256.Create(1.0 / 120.0) - x2 * s;
        s = Vector256.Create(1.0 / 6.0) - x2 * s;
        s = Vector256.Create(1.0) - x2 * s;
        var sin = x * s;
        var c = Vector256.Create(1.0 / 6402373705728000.0);
        c = Vector256.Create(1.0 / 20922789888000.0) - x2 * c;
        c = Vector256.Create(1.0 / 87178291200.0) - x2 * c;
        c = Vector256.Create(1.0 / 479001600.0) - x2 * c;
        c = Vector256.Create(1.0 / 3628800.0) - x2 * c;
        c = Vector256.Create(1.0 / 40320.0) - x2 * c;
        c = Vector256.Create(1.0 / 720.0) - x2 * c;
        c = Vector256.Create(1.0 / 24.0) - x2 * c;
        c = Vector256.Create(0.5) - x2 * c;
        var cos = Vector256.Create(1.0) - x2 * c;
        // q mod 4 = 0: (cos, sin); 1: (−sin, cos); 2: (−cos, −sin); 3: (sin, −cos).
        var swap = Vector256.Equals(q & Vector256<long>.One, Vector256<long>.One).AsDouble();
        var negCos = Vector256.ShiftLeft((q + Vector256<long>.One) & Vector256.Create(2L), 62);   // q mod 4 ∈ {1, 2}
        var negSin = Vector256.ShiftLeft(q & Vector256.Create(2L), 62);   // q mod 4 ∈ {2, 3}
        cosOut = (Vector256.ConditionalSelect(swap, sin, cos).AsInt64() ^ negCos).AsDouble();
        sinOut = (Vector256.ConditionalSelect(swap, cos, sin).AsInt64() ^ negSin).AsDouble();
    }

    /// <summary>CounterRandom.BoxMuller, lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BoxMuller(Vector256<ulong> h1, Vector256<ulong> h2, out Vector256<double> z0, out Vector256<double> z1)
    {
        var u1 = Vector256.ConvertToDouble(Vector256.ShiftRightLogical(h1, 11) + Vector256<ulong>.One) * Vector256.Create(1.0 / (1UL << 53));
        var r = Vector256.Sqrt(Vector256.Create(-2.0) * Log(u1));
        CosSin2Pi(Vector256.ShiftRightLogical(h2, 11).AsInt64(), out var c, out var s);
        z0 = r * c;
        z1 = r * s;
    }

    /// <summary>BoxMuller over whole vectors of given hashes (lengths a multiple of 4), for tests
    /// that aim at edge cases (u1 = 1, m next to √2, quarter-turn boundaries).</summary>
    internal static void BoxMuller256(ReadOnlySpan<ulong> h1, ReadOnlySpan<ulong> h2, Span<double> z0, Span<double> z1)
    {
        for (int i = 0; i + Vector256<ulong>.Count <= h1.Length; i += Vector256<ulong>.Count)
        {
            BoxMuller(Vector256.Create(h1.Slice(i)), Vector256.Create(h2.Slice(i)), out var a, out var b);
            a.CopyTo(z0.Slice(i));
            b.CopyTo(z1.Slice(i));
        }
    }

    /// <summary>Gaussian row: 4 Box–Muller pairs (8 columns) per step, the tail in scalar code.</summary>
    internal static void GaussianRow256(ulong rowKey, Span<float> d)
    {
        const int Pairs = 4;
        int blocks = d.Length / (2 * Pairs);
        ref float dst = ref MemoryMarshal.GetReference(d);
        var rk = Vector256.Create(rowKey);
        var evens = Vector256.Create(0UL, 2UL, 4UL, 6UL);
        var one = Vector256<ulong>.One;
        for (int b = 0; b < blocks; b++)
        {
            var col = Vector256.Create((ulong)(2 * Pairs * b)) + evens;   // 2·pair
            var h1 = Mix(rk ^ col);
            var h2 = Mix(rk ^ (col + one));
            BoxMuller(h1, h2, out var z0, out var z1);
            var z = Vector256.Narrow(z0, z1);   // [z0 of each pair, z1 of each pair]
            Vector256.Shuffle(z, Vector256.Create(0, 4, 1, 5, 2, 6, 3, 7)).StoreUnsafe(ref dst, (nuint)(2 * Pairs * b));
        }
        CounterRandom.GaussianRow(rowKey, d, blocks * Pairs);
    }

    /// <summary>Rademacher row: one 64-bit hash per 64 columns, 8 columns per step.</summary>
    internal static void RademacherRow256(ulong rowKey, Span<float> d)
    {
        const int F = 2 * 4;
        int full = d.Length / F * F;
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(d));
        var laneBits = Vector256.Create(1u << 0, 1u << 1, 1u << 2, 1u << 3, 1u << 4, 1u << 5, 1u << 6, 1u << 7);
        var plusOne = Vector256.Create(0x3F800000u);
        var sign = Vector256.Create(0x80000000u);
        ulong bits = 0;
        for (int c = 0; c < full; c += F)
        {
            if ((c & 63) == 0) bits = CounterRandom.Mix(rowKey ^ (ulong)(c >> 6));
            var clear = Vector256.Equals(Vector256.Create((uint)(bits >> (c & 63))) & laneBits, Vector256<uint>.Zero);   // bit clear → −1
            (plusOne | (clear & sign)).StoreUnsafe(ref dst, (nuint)c);
        }
        CounterRandom.RademacherTail(rowKey, d, full);
    }

    // ---- Vector128 (2 doubles, 4 floats per vector) ----

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<ulong> Mix(Vector128<ulong> x)
    {
        x += Vector128.Create(0x9E3779B97F4A7C15UL);
        x = (x ^ Vector128.ShiftRightLogical(x, 30)) * Vector128.Create(0xBF58476D1CE4E5B9UL);
        x = (x ^ Vector128.ShiftRightLogical(x, 27)) * Vector128.Create(0x94D049BB133111EBUL);
        return x ^ Vector128.ShiftRightLogical(x, 31);
    }

    /// <summary>DetMath.Log, lane-wise, for positive normal finite lanes (here u1 ∈ [2⁻⁵³, 1]).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector128<double> Log(Vector128<double> x)
    {
        var bits = x.AsInt64();
        var e = (Vector128.ShiftRightLogical(bits, 52) & Vector128.Create(0x7FFL)) - Vector128.Create(1023L);
        var m = ((bits & Vector128.Create(0x000FFFFFFFFFFFFFL)) | Vector128.Create(0x3FF0000000000000L)).AsDouble();   // [1, 2)
        var big = Vector128.GreaterThan(m, Vector128.Create(DetMath.Sqrt2));
        m = Vector128.ConditionalSelect(big, m * Vector128.Create(0.5), m);
        e -= big.AsInt64();   // mask −1 → e + 1
        var one = Vector128.Create(1.0);
        var s = (m - one) / (m + one);
        var s2 = s * s;
        var t = Vector128.Create(1.0 / 21);
        t = t * s2 + Vector128.Create(1.0 / 19); t = t * s2 + Vector128.Create(1.0 / 17); t = t * s2 + Vector128.Create(1.0 / 15); t = t * s2 + Vector128.Create(1.0 / 13);
        t = t * s2 + Vector128.Create(1.0 / 11); t = t * s2 + Vector128.Create(1.0 / 9); t = t * s2 + Vector128.Create(1.0 / 7); t = t * s2 + Vector128.Create(1.0 / 5);
        t = t * s2 + Vector128.Create(1.0 / 3); t = t * s2 + one;
        return Vector128.ConvertToDouble(e) * Vector128.Create(DetMath.Ln2) + Vector128.Create(2.0) * s * t;
    }

    /// <summary>DetMath.CosSin2Pi, lane-wise, for 0 ≤ k &lt; 2⁵³; the quadrant switch becomes a
    /// select (swap cos and sin on odd quadrants) and sign flips (as unary minus does).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void CosSin2Pi(Vector128<long> k, out Vector128<double> cosOut, out Vector128<double> sinOut)
    {
        var q = Vector128.ShiftRightArithmetic(k + Vector128.Create(1L << 50), 51);   // round(4u)
        var t = Vector128.ConvertToDouble(k - Vector128.ShiftLeft(q, 51)) * Vector128.Create(1.0 / (1UL << 53));   // exact
        var x = Vector128.Create(DetMath.TwoPi) * t;
        var x2 = x * x;
        var s = Vector128.Create(1.0 / 355687428096000.0);
        s = Vector128.Create(1.0 / 1307674368000.0) - x2 * s;
        s = Vector128.Create(1.0 / 6227020800.0) - x2 * s;
        s = Vector128.Create(1.0 / 39916800.0) - x2 * s;
        s = Vector128.Create(1.0 / 362880.0) - x2 * s;
        s = Vector128.Create(1.0 / 5040.0) - x2 * s;
        s = Vector128.Create(1.0 / 120.0) - x2 * s;
        s = Vector128.Create(1.0 / 6.0) - x2 * s;
        s = Vector128.Create(1.0) - x2 * s;
        var sin = x * s;
        var c = Vector128.Create(1.0 / 6402373705728000.0);
        c = Vector128.Create(1.0 / 20922789888000.0) - x2 * c;
        c = Vector128.Create(1.0 / 87178291200.0) - x2 * c;
        c = Vector128.Create(1.0 / 479001600.0) - x2 * c;
        c = Vector128.Create(1.0 / 3628800.0) - x2 * c;
        c = Vector128.Create(1.0 / 40320.0) - x2 * c;
        c = Vector128.Create(1.0 / 720.0) - x2 * c;
        c = Vector128.Create(1.0 / 24.0) - x2 * c;
        c = Vector128.Create(0.5) - x2 * c;
        var cos = Vector128.Create(1.0) - x2 * c;
        // q mod 4 = 0: (cos, sin); 1: (−sin, cos); 2: (−cos, −sin); 3: (sin, −cos).
        var swap = Vector128.Equals(q & Vector128<long>.One, Vector128<long>.One).AsDouble();
        var negCos = Vector128.ShiftLeft((q + Vector128<long>.One) & Vector128.Create(2L), 62);   // q mod 4 ∈ {1, 2}
        var negSin = Vector128.ShiftLeft(q & Vector128.Create(2L), 62);   // q mod 4 ∈ {2, 3}
        cosOut = (Vector128.ConditionalSelect(swap, sin, cos).AsInt64() ^ negCos).AsDouble();
        sinOut = (Vector128.ConditionalSelect(swap, cos, sin).AsInt64() ^ negSin).AsDouble();
    }

    /// <summary>CounterRandom.BoxMuller, lane-wise.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void BoxMuller(Vector128<ulong> h1, Vector128<ulong> h2, out Vector128<double> z0, out Vector128<double> z1)
    {
        var u1 = Vector128.ConvertToDouble(Vector128.ShiftRightLogical(h1, 11) + Vector128<ulong>.One) * Vector128.Create(1.0 / (1UL << 53));
        var r = Vector128.Sqrt(Vector128.Create(-2.0) * Log(u1));
        CosSin2Pi(Vector128.ShiftRightLogical(h2, 11).AsInt64(), out var c, out var s);
        z0 = r * c;
        z1 = r * s;
    }

    /// <summary>BoxMuller over whole vectors of given hashes (lengths a multiple of 2), for tests
    /// that aim at edge cases (u1 = 1, m next to √2, quarter-turn boundaries).</summary>
    internal static void BoxMuller128(ReadOnlySpan<ulong> h1, ReadOnlySpan<ulong> h2, Span<double> z0, Span<double> z1)
    {
        for (int i = 0; i + Vector128<ulong>.Count <= h1.Length; i += Vector128<ulong>.Count)
        {
            BoxMuller(Vector128.Create(h1.Slice(i)), Vector128.Create(h2.Slice(i)), out var a, out var b);
            a.CopyTo(z0.Slice(i));
            b.CopyTo(z1.Slice(i));
        }
    }

    /// <summary>Gaussian row: 2 Box–Muller pairs (4 columns) per step, the tail in scalar code.</summary>
    internal static void GaussianRow128(ulong rowKey, Span<float> d)
    {
        const int Pairs = 2;
        int blocks = d.Length / (2 * Pairs);
        ref float dst = ref MemoryMarshal.GetReference(d);
        var rk = Vector128.Create(rowKey);
        var evens = Vector128.Create(0UL, 2UL);
        var one = Vector128<ulong>.One;
        for (int b = 0; b < blocks; b++)
        {
            var col = Vector128.Create((ulong)(2 * Pairs * b)) + evens;   // 2·pair
            var h1 = Mix(rk ^ col);
            var h2 = Mix(rk ^ (col + one));
            BoxMuller(h1, h2, out var z0, out var z1);
            var z = Vector128.Narrow(z0, z1);   // [z0 of each pair, z1 of each pair]
            Vector128.Shuffle(z, Vector128.Create(0, 2, 1, 3)).StoreUnsafe(ref dst, (nuint)(2 * Pairs * b));
        }
        CounterRandom.GaussianRow(rowKey, d, blocks * Pairs);
    }

    /// <summary>Rademacher row: one 64-bit hash per 64 columns, 4 columns per step.</summary>
    internal static void RademacherRow128(ulong rowKey, Span<float> d)
    {
        const int F = 2 * 2;
        int full = d.Length / F * F;
        ref uint dst = ref Unsafe.As<float, uint>(ref MemoryMarshal.GetReference(d));
        var laneBits = Vector128.Create(1u << 0, 1u << 1, 1u << 2, 1u << 3);
        var plusOne = Vector128.Create(0x3F800000u);
        var sign = Vector128.Create(0x80000000u);
        ulong bits = 0;
        for (int c = 0; c < full; c += F)
        {
            if ((c & 63) == 0) bits = CounterRandom.Mix(rowKey ^ (ulong)(c >> 6));
            var clear = Vector128.Equals(Vector128.Create((uint)(bits >> (c & 63))) & laneBits, Vector128<uint>.Zero);   // bit clear → −1
            (plusOne | (clear & sign)).StoreUnsafe(ref dst, (nuint)c);
        }
        CounterRandom.RademacherTail(rowKey, d, full);
    }
}

/// <summary>Logarithm and sine/cosine from basic IEEE operations only, so that their results do not
/// depend on the platform's math library (Math.Log / Math.Cos may differ in the last bit between
/// C runtimes). Accurate to a few ulp, far beyond what float32 projection entries need.</summary>
public static class DetMath
{
    internal const double Ln2 = 0.6931471805599453094172321;
    internal const double Sqrt2 = 1.4142135623730950488016887;
    internal const double TwoPi = 6.283185307179586476925287;

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
