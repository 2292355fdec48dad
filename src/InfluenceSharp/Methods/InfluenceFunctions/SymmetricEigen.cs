using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>Eigendecomposition of a symmetric positive semi-definite matrix (a Kronecker factor)
/// that survives LAPACK's convergence failures.</summary>
internal static class SymmetricEigen
{
    /// <summary>(m + mᵀ)/2, its Scalars held while libtorch reads them (an implicit Scalar from `/ 2`
    /// or `+` can be finalised mid-call: seen as "toLong" failures).</summary>
    public static Tensor Symmetrized(Tensor m)
    {
        using var one = 1.0.ToScalar();
        using var half = 0.5.ToScalar();
        return m.add(m.mT, one).mul_(half);
    }

    /// <summary>Eigenvalues (ascending) and eigenvectors (columns) of (m + mᵀ)/2. <paramref name="what"/>
    /// names the matrix in errors. <paramref name="firstAttempt"/> (tests only) skips the earlier
    /// attempts: 0 eigh, 1-3 rescaled and shifted eigh, 4 SVD.</summary>
    public static (Tensor Values, Tensor Vectors) Decompose(Tensor m, string what, int firstAttempt = 0)
    {
        using var scope = NewDisposeScope();
        using (var finite = m.isfinite().all())
            if (!finite.item<bool>())
                throw new InfluenceSharpException($"{what} has non-finite entries (NaN or infinity): the model's activations or gradients overflowed; check the checkpoint, the learning rate and the input scaling.");
        var sym = Symmetrized(m);
        if (firstAttempt == 0 && TryEigh(sym, out var r)) return Keep(r);
        // dsyevd can fail to converge on large rank-deficient factors (ResNet-18's 4,608-wide
        // conv inputs fitted on a few hundred examples). Rescaling to unit size and a diagonal shift
        // leave the eigenvectors unchanged and move every eigenvalue by the shift, which is undone.
        double scale = sym.diagonal().abs().max().item<double>();
        if (!(scale > 0)) scale = 1;
        using var inv = (1.0 / scale).ToScalar();
        var unit = sym * inv;
        var eye = torch.eye(sym.shape[0], dtype: sym.dtype, device: sym.device);
        double[] shifts = { 0.0, 1e-10, 1e-7 };
        for (int a = Math.Max(firstAttempt, 1); a <= shifts.Length; a++)
        {
            double rel = shifts[a - 1];
            using var shift = rel.ToScalar();
            using var back = scale.ToScalar();
            if (TryEigh(unit + eye * shift, out var s)) return Keep((s.Values.sub(shift).mul(back), s.Vectors));
        }
        // Last resort: for a symmetric PSD matrix the SVD is an eigendecomposition (U S Uᵀ).
        try
        {
            var (u, sv, _) = torch.linalg.svd(unit, fullMatrices: false);
            using var back = scale.ToScalar();
            return Keep((sv.flip(0).mul(back), u.flip(1)));
        }
        catch (ExternalException e)
        {
            throw new InfluenceSharpException($"{what}: the eigendecomposition failed to converge even after rescaling and shifting ({e.Message.Split('\n')[0]}).");
        }
    }

    static bool TryEigh(Tensor m, out (Tensor Values, Tensor Vectors) result)
    {
        try { result = torch.linalg.eigh(m); return true; }
        catch (ExternalException) { result = default; return false; }
    }

    static (Tensor, Tensor) Keep((Tensor Values, Tensor Vectors) r) =>
        (r.Values.MoveToOuterDisposeScope(), r.Vectors.MoveToOuterDisposeScope());
}
