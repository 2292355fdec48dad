using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Runtime.Intrinsics;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;
using Path = InfluenceSharp.Features.CounterRandom.FillPath;

namespace InfluenceSharp.Bench;

/// <summary>The dense projection's generator: the MLP-sized P (101,770 × 2,048) filled by the scalar
/// reference and by the widest vector path (CounterRandom.Fill, rows in parallel on all cores), Gaussian
/// and Rademacher. The vector fill is checked bit for bit against the scalar one (SHA-256 of the bytes).
/// "Break-even batch" is the batch at which regenerating P costs as much as the projection GEMM with
/// it (2·batch FLOPs per entry of P at this process's GEMM rate).</summary>
public static class RngCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        const int rows = 101770, cols = 2048;
        const long entries = (long)rows * cols;
        double gemm = PeerCases.GemmRate();
        yield return new BenchResult("rng", "GEMM rate in this process (fp32 2048^3, best of 4)", 0, 2.0 * 2048 * 2048 * 2048 / 1e9 / gemm, 2.0 * 2048 * 2048 * 2048 / 1e9, Measure.PeakRssMiB(), $"{gemm:F1} GFLOP/s");
        var best = CounterRandom.BestPath;
        ulong key = CounterRandom.Key(0, CounterRandom.Mix(0) ^ CounterRandom.Hash("dense"));
        var dst = new float[entries];
        foreach (bool gaussian in new[] { true, false })
        {
            string kind = gaussian ? "Gaussian" : "Rademacher";
            // Warm up both paths (JIT, page faults of dst).
            CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, Path.Scalar);
            CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, best);
            double scalar = double.MaxValue, simd = double.MaxValue;
            for (int i = 0; i < 2; i++) scalar = Math.Min(scalar, Measure.Seconds(() => CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, Path.Scalar)));
            string scalarHash = Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(dst.AsSpan())));
            for (int i = 0; i < 3; i++) simd = Math.Min(simd, Measure.Seconds(() => CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, best)));
            string simdHash = Convert.ToHexStringLower(SHA256.HashData(MemoryMarshal.AsBytes(dst.AsSpan())));
            if (simdHash != scalarHash) throw new InvalidOperationException($"{kind}: the {best} fill differs from the scalar reference");
            string Note(double s) => $"{1e9 * s / entries:F2} ns/entry on {Environment.ProcessorCount} cores ({1e9 * s / entries * Environment.ProcessorCount:F1} ns per entry per core); " +
                                     $"break-even batch {1e9 * s / entries * gemm / 2:F0}";
            yield return new BenchResult("rng", $"{kind} P {rows}x{cols}, scalar reference", entries, scalar, 0, Measure.PeakRssMiB(), Note(scalar));
            yield return new BenchResult("rng", $"{kind} P {rows}x{cols}, {best}", entries, simd, 0, Measure.PeakRssMiB(),
                Note(simd) + $"; {scalar / simd:F1}x the scalar; bit-identical (SHA-256 {simdHash[..16]})");
            // The narrower vector paths the hardware also accelerates (for machines without the widest).
            foreach (var path in new[] { (Path.Vector256, Vector256.IsHardwareAccelerated), (Path.Vector128, Vector128.IsHardwareAccelerated) })
            {
                if (!path.IsHardwareAccelerated || path.Item1 == best) continue;
                CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, path.Item1);
                double t = double.MaxValue;
                for (int i = 0; i < 2; i++) t = Math.Min(t, Measure.Seconds(() => CounterRandom.Fill(gaussian, key, 0, rows, cols, dst, path.Item1)));
                yield return new BenchResult("rng", $"{kind} P {rows}x{cols}, {path.Item1}", entries, t, 0, Measure.PeakRssMiB(), Note(t) + $"; {scalar / t:F1}x the scalar");
            }
        }
        dst = null!;
        GC.Collect();
        // The dense projector's whole setup with P cached (what `peers-trak-quick` calls projector
        // setup, less the TRAK object): generation in 8 Mi-entry chunks, copies into one tensor, scaling.
        using (var model = new Mlp(784, new[] { 128 }, 10))
        {
            var layers = TrackedLayer.Find(model);
            var o = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Gaussian, Dim = cols };
            using (new GradientProjector(layers, o, 0, false, ScalarType.Float32, CPU)) { }
            double setup = double.MaxValue;
            for (int i = 0; i < 2; i++) setup = Math.Min(setup, Measure.Seconds(() => { using var p = new GradientProjector(layers, o, 0, false, ScalarType.Float32, CPU); }));
            yield return new BenchResult("rng", $"GradientProjector setup, Dense Gaussian k={cols}, MLP ({layers.Sum(l => l.NumParams)} params), cached", layers.Sum(l => l.NumParams) * (long)cols, setup, 0, Measure.PeakRssMiB(),
                $"best of 2; P by the {best} path inside");
        }
    }

    /// <summary>TRAK featurisation of the MLP with the dense Gaussian and Rademacher projections (k = 2,048, batch 500,
    /// 1,000 examples after a warm-up batch) with P cached and with no cache (P regenerated chunk by
    /// chunk for every batch, as for models whose P does not fit in memory). P is generated by the
    /// widest accelerated path; run with DOTNET_EnableHWIntrinsic=0 for the scalar generator.</summary>
    public static IEnumerable<BenchResult> Regen(BenchContext c)
    {
        const int n = 1000, batch = 500, k = 2048;
        var (train, _, src) = c.Data(n + batch);
        double gemm = PeerCases.GemmRate();
        yield return new BenchResult("rng-regen", "GEMM rate in this process (fp32 2048^3, best of 4)", 0, 2.0 * 2048 * 2048 * 2048 / 1e9 / gemm, 2.0 * 2048 * 2048 * 2048 / 1e9, Measure.PeakRssMiB(), $"{gemm:F1} GFLOP/s");
        torch.manual_seed(0);
        using var model = new Mlp(784, new[] { 128 }, 10);
        model.eval();
        long nParams = TrackedLayer.Find(model).Sum(l => l.NumParams);
        // Gaussian (the peers' setting) and Rademacher (the library's and the reference TRAK's default).
        foreach (var (kind, cache) in new (ProjectionKind, long?)[] { (ProjectionKind.Gaussian, null), (ProjectionKind.Gaussian, 0), (ProjectionKind.Rademacher, null), (ProjectionKind.Rademacher, 0) })
        {
            var proj = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = kind, Dim = k, CacheBytes = cache };
            using var trak = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = batch });
            foreach (var v in trak.TrainFeatures(SubsetDataset.Range(train, n, batch)).Values) v.Dispose();   // warm-up batch
            double t = Measure.Seconds(() => { foreach (var v in trak.TrainFeatures(SubsetDataset.Range(train, 0, n)).Values) v.Dispose(); });
            double gflop = 2.0 * n * nParams * k / 1e9;
            yield return new BenchResult("rng-regen", $"mlp featurize {n}, Dense {kind} k={k}, batch {batch}, P {(cache is null ? "cached" : "regenerated per batch")}", n, t, gflop, Measure.PeakRssMiB(),
                $"projection GEMM {100 * gflop / t / gemm:F0}% of this process's GEMM rate; P generator {CounterRandom.BestPath}; {nParams} params; {src}");
        }
    }
}
