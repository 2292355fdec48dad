using InfluenceSharp.Gradients;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

// Micro-benchmarks of single kernels inside the attribution passes (im2col, narrow Gram matrices,
// the rank-one scoring contraction): best-of-N timings of one operation at the peers' shapes.

/// <summary>im2col alone at the issue-13 CNN's two conv layers (batch 500, float32, output in a reused
/// buffer as inside a capture): best of 20.</summary>
public static class Im2ColCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        foreach (var (name, ch, hw, k) in new[] { ("conv1 1x28x28, 5x5", 1L, 28L, 5L), ("conv2 8x12x12, 5x5", 8L, 12L, 5L), ("3x3 pad 1, 16x28x28", 16L, 28L, 3L) })
        {
            var x = torch.randn(500, ch, hw, hw);
            using var ws = new Workspace();
            long pad = k == 3 ? 1 : 0;
            Tensor Run() => Im2Col.Patches(x, new[] { k, k }, new[] { 1L, 1 }, new[] { pad, pad }, new[] { 1L, 1 }, bias: true, ws);
            for (int i = 0; i < 3; i++) Run();
            double best = Enumerable.Range(0, 20).Min(_ => Measure.Seconds(() => Run()));
            var shape = Run().shape;
            yield return new BenchResult("im2col", name, 500, best, 0, Measure.PeakRssMiB(), $"patches [{string.Join(", ", shape)}], {shape.Aggregate(4L, (a, b) => a * b) / 1e6:F0} MB; best of 20");
        }
    }
}

/// <summary>Σ a aᵀ over a tall, narrow patch matrix (the CNN's conv1: [288,000 × 26] per batch of 500;
/// conv2: [32,000 × 201]) by several GEMM arrangements: best of 10.</summary>
public static class GramCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        foreach (var (rows, width) in new[] { (288_000L, 26L), (32_000L, 201L) })
        {
            var a = torch.randn(rows, width);
            var x = a.narrow(1, 0, width - 1);
            var variants = new (string, Func<Tensor>)[]
            {
                ("Gram(x), bias column excluded (current)", () => LayerBatch.Gram(x)),
                ("Gram(a) with the bias column", () => LayerBatch.Gram(a)),
                ("aᵀa, one GEMM", () => a.mT.matmul(a)),
                ("64 slices bmm", () => { long m = rows / 64 * 64; var v = a.narrow(0, 0, m).view(64, m / 64, width); return v.transpose(1, 2).bmm(v).sum(new long[] { 0 }); }),
                ("256 slices bmm", () => { long m = rows / 256 * 256; var v = a.narrow(0, 0, m).view(256, m / 256, width); return v.transpose(1, 2).bmm(v).sum(new long[] { 0 }); }),
                ("column sums of x", () => x.sum(new long[] { 0 })),
            };
            foreach (var (name, f) in variants)
            {
                for (int i = 0; i < 2; i++) f().Dispose();
                double best = Enumerable.Range(0, 10).Min(_ => Measure.Seconds(() => f().Dispose()));
                yield return new BenchResult("gram", $"[{rows}x{width}] {name}", rows, best, 2.0 * rows * width * width / 1e9, Measure.PeakRssMiB(), "best of 10");
            }
        }
    }
}

/// <summary>The rank-one pairwise scoring step of a Linear layer at the peers' MLP shape (fc1: Out 128,
/// In 785; 100 preconditioned queries; a batch of 500): the two GEMM orientations and the contraction
/// with the output gradients.</summary>
public static class RankOneScoreCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        const int nq = 100, outF = 128, inF = 785, b = 500;
        var p = torch.randn(nq, outF * inF);
        var a = torch.randn(b, inF); var g = torch.randn(b, outF);
        double flop = 2.0 * b * nq * outF * inF / 1e9;
        Tensor Current()
        {
            var y = a.matmul(p.reshape(nq * outF, inF).mT).reshape(b, nq, outF);
            return y.mul_(g.unsqueeze(1)).sum(2).mT;
        }
        Tensor Other()
        {
            var y = p.reshape(nq * outF, inF).matmul(a.mT).reshape(nq, outF, b);   // [n_q, Out, B]
            return y.mul_(g.mT.unsqueeze(0)).sum(1);
        }
        Tensor GemmOnly() => a.matmul(p.reshape(nq * outF, inF).mT);
        Tensor GemmOther() => p.reshape(nq * outF, inF).matmul(a.mT);
        Tensor Fused()
        {
            var y = a.matmul(p.reshape(nq * outF, inF).mT).reshape(b, nq, outF);
            return y.bmm(g.unsqueeze(2)).squeeze(2).mT;
        }
        Tensor Chunked(int chunk)
        {
            var pt = p.reshape(nq * outF, inF).mT;
            var parts = new List<Tensor>();
            for (int s0 = 0; s0 < b; s0 += chunk)
            {
                int len = Math.Min(chunk, b - s0);
                var y = a.narrow(0, s0, len).matmul(pt).reshape(len, nq, outF);
                parts.Add(y.mul_(g.narrow(0, s0, len).unsqueeze(1)).sum(2));
            }
            return torch.cat(parts, 0).mT;
        }
        var c1 = Current(); var c2 = Other(); var c3 = Fused();
        if (c.N < 0) Console.Error.WriteLine($"shapes {string.Join(",", c1.shape)} {string.Join(",", c2.shape)} {string.Join(",", c3.shape)}; c1[0,0..3] {c1[0, 0].item<float>()} {c1[0, 1].item<float>()} c2 {c2[0, 0].item<float>()} {c2[0, 1].item<float>()} c3 {c3[0, 0].item<float>()} {c3[0, 1].item<float>()}");
        var err = Math.Max(Math.Max((c1 - c2).abs().max().item<float>(), (c1 - c3).abs().max().item<float>()), (c1 - Chunked(64)).abs().max().item<float>()) / c1.abs().max().item<float>();
        foreach (var (name, f) in new (string, Func<Tensor>)[] { ("a·Pᵀ then ⊙g, sum (current)", Current), ("a·Pᵀ then bmm with g", Fused), ("current in chunks of 32 examples", () => Chunked(32)), ("current in chunks of 64 examples", () => Chunked(64)), ("current in chunks of 128 examples", () => Chunked(128)), ("P·aᵀ then ⊙gᵀ, sum over Out", Other), ("GEMM a·Pᵀ alone", GemmOnly), ("GEMM P·aᵀ alone", GemmOther) })
        {
            for (int i = 0; i < 2; i++) f().Dispose();
            double best = Enumerable.Range(0, 5).Min(_ => Measure.Seconds(() => f().Dispose()));
            yield return new BenchResult("rank-one-score", name, b, best, flop, Measure.PeakRssMiB(), $"n_q {nq}, Out {outF}, In {inF}, batch {b}; max rel. difference of the orders {err:E1}");
        }
    }
}

/// <summary>The cost of artifact checksums (XXH3-64): hashing a 256 MB buffer in memory, a 256 MB
/// file from the page cache, and a safetensors load of that file with and without the check.</summary>
public static class ChecksumCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        const int mb = 256;
        var bytes = new byte[mb << 20];
        new Random(1).NextBytes(bytes);
        for (int i = 0; i < 2; i++) InfluenceSharp.Formats.Checksum.Of(bytes);
        double mem = Enumerable.Range(0, 5).Min(_ => Measure.Seconds(() => InfluenceSharp.Formats.Checksum.Of(bytes)));
        yield return new BenchResult("checksum", "xxh3-64 of a buffer", 0, mem, 0, Measure.PeakRssMiB(), $"{mb / mem:F0} MB/s; best of 5");
        string path = Path.Combine(Path.GetTempPath(), $"checksum-bench-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var t = torch.randn(mb << 18))   // 256 MB of float32
            {
                string? sum = null;
                InfluenceSharp.Formats.SafeTensors.Save(path, new Dictionary<string, Tensor> { ["x"] = t }, null, s => sum = s);
                for (int i = 0; i < 2; i++) InfluenceSharp.Formats.Checksum.OfFile(path);
                double file = Enumerable.Range(0, 5).Min(_ => Measure.Seconds(() => InfluenceSharp.Formats.Checksum.OfFile(path)));
                yield return new BenchResult("checksum", "xxh3-64 of a file (page cache)", 0, file, 0, Measure.PeakRssMiB(), $"{mb / file:F0} MB/s; best of 5");
                double plain = Enumerable.Range(0, 5).Min(_ => Measure.Seconds(() => InfluenceSharp.Formats.SafeTensors.Load(path).Dispose()));
                double check = Enumerable.Range(0, 5).Min(_ => Measure.Seconds(() => InfluenceSharp.Formats.SafeTensors.Load(path, sum, "bench").Dispose()));
                yield return new BenchResult("checksum", "safetensors load, unchecked", 0, plain, 0, Measure.PeakRssMiB(), $"{mb / plain:F0} MB/s; best of 5");
                yield return new BenchResult("checksum", "safetensors load, checked", 0, check, 0, Measure.PeakRssMiB(), $"{mb / check:F0} MB/s; +{100 * (check - plain) / plain:F0}% over unchecked; best of 5");
            }
        }
        finally { File.Delete(path); }
    }
}
