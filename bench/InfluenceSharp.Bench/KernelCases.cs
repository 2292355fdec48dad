using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>TRAK's kernel step at the peers' shape (n = 5,000 rows, k = 2,048): the float64 Gram
/// ΦᵀΦ and its inverse by each solver, on synthetic rows with a decaying column spectrum (TRAK rows
/// are far from isotropic).</summary>
public static class KernelCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        const int n = 5000, k = 2048;
        var g = new torch.Generator(0);
        var scales = torch.arange(1, k + 1, dtype: ScalarType.Float32).pow(-0.75);
        var phi = (torch.randn(n, k, generator: g) * scales.unsqueeze(0)).contiguous();
        var phi64 = phi.to(ScalarType.Float64);
        double gram = Measure.Seconds(() => phi64.mT.matmul(phi64).Dispose());
        gram = Math.Min(gram, Measure.Seconds(() => phi64.mT.matmul(phi64).Dispose()));
        yield return new BenchResult("trak-kernel", "Gram fp64 5000x2048", n, gram, 2.0 * n * k * k / 1e9, Measure.PeakRssMiB());
        foreach (int blocks in new[] { 2, 4, 8 })
        {
            Tensor Blocked()
            {
                long w = k / blocks;
                var g = torch.empty(k, k, dtype: ScalarType.Float64);
                for (int i = 0; i < blocks; i++)
                    for (int j = i; j < blocks; j++)
                    {
                        var blk = phi64.narrow(1, i * w, w).mT.matmul(phi64.narrow(1, j * w, w));
                        g.narrow(0, i * w, w).narrow(1, j * w, w).copy_(blk);
                        if (j != i) g.narrow(0, j * w, w).narrow(1, i * w, w).copy_(blk.mT);
                    }
                return g;
            }
            double tb = Enumerable.Range(0, 2).Min(_ => Measure.Seconds(() => Blocked().Dispose()));
            double diff = (Blocked() - phi64.mT.matmul(phi64)).abs().max().item<double>();
            yield return new BenchResult("trak-kernel", $"Gram fp64, {blocks}x{blocks} blocks, upper triangle", n, tb, 2.0 * n * k * k / 1e9 * (blocks + 1) / (2.0 * blocks), Measure.PeakRssMiB(), $"max |diff| from the full product {diff:E1}");
        }
        double gram32 = Measure.Seconds(() => phi.mT.matmul(phi).Dispose());
        yield return new BenchResult("trak-kernel", "Gram fp32 5000x2048", n, gram32, 2.0 * n * k * k / 1e9, Measure.PeakRssMiB());
        var kern = phi64.mT.matmul(phi64);
        double eigh = Measure.Seconds(() => { var (e, v) = torch.linalg.eigh(kern); e.Dispose(); v.Dispose(); });
        yield return new BenchResult("trak-kernel", "eigh fp64 2048", n, eigh, 0, Measure.PeakRssMiB());
        double chol = Measure.Seconds(() => { var (l, info) = torch.linalg.cholesky_ex(kern); torch.cholesky_inverse(l).Dispose(); l.Dispose(); info.Dispose(); });
        yield return new BenchResult("trak-kernel", "cholesky + cholesky_inverse fp64 2048", n, chol, 0, Measure.PeakRssMiB());
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
