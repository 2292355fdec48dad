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
