using System.Runtime.InteropServices;
using InfluenceSharp.Features;
using Xunit;
using Path = InfluenceSharp.Features.CounterRandom.FillPath;

namespace InfluenceSharp.Tests.Methods;

/// <summary>The vector code of CounterRandom (512-, 256- and 128-bit, run in software where the
/// hardware lacks a width) writes the scalar reference's bits exactly: existing projections, feature
/// stores and manifests stay valid whichever path a machine takes.</summary>
public class CounterRandomSimdTests
{
    static readonly Path[] VectorPaths = { Path.Vector512, Path.Vector256, Path.Vector128, Path.Best };

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void VectorFillEqualsTheScalarReferenceBitForBit(bool gaussian)
    {
        int seed = TestSeed.For() ^ (gaussian ? 1 : 0);
        var rng = new Random(seed);
        // Every length up to 70 (shorter than a vector, odd, not multiples of 8/16, across a 64-column
        // word), word and block boundaries, a projection-sized row and random lengths.
        var colCounts = Enumerable.Range(1, 70).Concat(new[] { 127, 128, 129, 255, 1000, 2047, 2048, 2049 })
            .Concat(Enumerable.Range(0, 10).Select(_ => rng.Next(1, 3000))).ToArray();
        var rowStarts = new[] { 0L, 1L << 40, (1L << 40) + rng.NextInt64(1L << 20), rng.NextInt64(), long.MaxValue - 8 };
        int cases = 0;
        foreach (int cols in colCounts)
        {
            long rowStart = rowStarts[rng.Next(rowStarts.Length)];
            int rows = rng.Next(1, 5);
            ulong key = (ulong)rng.NextInt64() ^ ((ulong)rng.Next() << 63);
            Check(gaussian, key, rowStart, rows, cols, $"{TestSeed.Describe()}, case seed {seed}");
            cases++;
        }
        // Large enough for Fill's parallel rows.
        Check(gaussian, (ulong)rng.NextInt64(), 1L << 40, 40, 2049, $"{TestSeed.Describe()}, parallel case");
        Assert.Equal(colCounts.Length, cases);
    }

    static void Check(bool gaussian, ulong key, long rowStart, int rows, int cols, string what)
    {
        var reference = new float[rows * cols];
        CounterRandom.Fill(gaussian, key, rowStart, rows, cols, reference, Path.Scalar);
        var refBits = MemoryMarshal.Cast<float, uint>(reference);
        foreach (var path in VectorPaths)
        {
            var got = new float[rows * cols + 3];
            got.AsSpan(rows * cols).Fill(7f);   // guard: nothing written past rows × cols
            CounterRandom.Fill(gaussian, key, rowStart, rows, cols, got, path);
            var bits = MemoryMarshal.Cast<float, uint>(got.AsSpan(0, rows * cols));
            for (int i = 0; i < bits.Length; i++)
                if (bits[i] != refBits[i])
                    Assert.Fail($"{(gaussian ? "Gaussian" : "Rademacher")} {path}: key {key:X16}, rows {rowStart}+{rows}, cols {cols}: " +
                                $"entry ({i / cols}, {i % cols}) is {got[i]:R} (0x{bits[i]:X8}), scalar {reference[i]:R} (0x{refBits[i]:X8}); {what}");
            Assert.All(got.Skip(rows * cols), v => Assert.Equal(7f, v));
        }
    }

    /// <summary>Box–Muller's edge cases, aimed at directly: u1 = 1 (log 0) and u1 = 2⁻⁵³, mantissas
    /// either side of √2 (Log's branch), and angles either side of every eighth turn (the quarter-turn
    /// rounding) and at the ends of [0, 1); the doubles (before rounding to float) equal the scalar's.</summary>
    [Fact]
    public void VectorBoxMullerEqualsTheScalarOnEdgeCases()
    {
        var rng = TestSeed.Random();
        var h1 = new List<ulong> { ulong.MaxValue, 0, 1UL << 11, (ulong.MaxValue >> 1) };
        // u1 = n·2⁻⁵³ with n = (h1 >> 11) + 1: mantissa bits next to √2 = 0x3FF6A09E667F3BCD at several exponents.
        const long sqrt2Mantissa = 0x6A09E667F3BCDL;
        foreach (int e in new[] { 0, 1, 5, 20, 52 })
            foreach (long dm in new[] { -2L, -1, 0, 1, 2 })
            {
                ulong n = ((1UL << 52) | (ulong)(sqrt2Mantissa + dm)) >> e;
                h1.Add((n - 1) << 11 | (ulong)(uint)rng.Next(1 << 11));
            }
        var h2 = new List<ulong> { 0, ulong.MaxValue, 1UL << 11 };
        for (long j = 0; j <= 8; j++)
            foreach (long dk in new[] { -2L, -1, 0, 1, 2 })
            {
                long k = j * (1L << 50) + dk;
                if (k >= 0 && k < 1L << 53) h2.Add((ulong)k << 11 | (ulong)(uint)rng.Next(1 << 11));
            }
        // Pair every h1 with every h2 and add random draws, padded to a multiple of 8 lanes.
        var a = new List<ulong>(); var b = new List<ulong>();
        foreach (var x in h1) foreach (var y in h2) { a.Add(x); b.Add(y); }
        for (int i = 0; i < 4000; i++) { a.Add((ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63)); b.Add((ulong)rng.NextInt64() ^ ((ulong)rng.Next(2) << 63)); }
        while (a.Count % 8 != 0) { a.Add(a[0]); b.Add(b[0]); }
        var ha = a.ToArray(); var hb = b.ToArray();
        var paths = new (string Name, Action<ulong[], ulong[], double[], double[]> Run)[]
        {
            ("512", (x, y, z0, z1) => CounterRandomSimd.BoxMuller512(x, y, z0, z1)),
            ("256", (x, y, z0, z1) => CounterRandomSimd.BoxMuller256(x, y, z0, z1)),
            ("128", (x, y, z0, z1) => CounterRandomSimd.BoxMuller128(x, y, z0, z1)),
        };
        foreach (var (name, run) in paths)
        {
            var z0 = new double[ha.Length]; var z1 = new double[ha.Length];
            run(ha, hb, z0, z1);
            for (int i = 0; i < ha.Length; i++)
            {
                var (e0, e1) = CounterRandom.BoxMuller(ha[i], hb[i]);
                Assert.True(BitConverter.DoubleToInt64Bits(e0) == BitConverter.DoubleToInt64Bits(z0[i]) &&
                            BitConverter.DoubleToInt64Bits(e1) == BitConverter.DoubleToInt64Bits(z1[i]),
                    $"Vector{name}: h1 {ha[i]:X16}, h2 {hb[i]:X16}: ({z0[i]:R}, {z1[i]:R}), scalar ({e0:R}, {e1:R}); {TestSeed.Describe()}");
            }
        }
    }

    [Fact]
    public void PublicFillIsTheBestPath()
    {
        var rng = TestSeed.Random();
        ulong key = (ulong)rng.NextInt64();
        foreach (bool gaussian in new[] { true, false })
        {
            var best = new float[3 * 101]; var scalar = new float[3 * 101];
            CounterRandom.Fill(gaussian, key, 5, 3, 101, best);
            CounterRandom.Fill(gaussian, key, 5, 3, 101, scalar, Path.Scalar);
            Assert.True(MemoryMarshal.Cast<float, uint>(best).SequenceEqual(MemoryMarshal.Cast<float, uint>(scalar)), TestSeed.Describe());
        }
    }
}
