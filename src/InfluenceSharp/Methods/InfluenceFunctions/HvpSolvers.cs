using InfluenceSharp.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>What a batched CG solve reached: relative residuals ‖b − (H+λI)x‖/‖b‖ per right-hand side.</summary>
public sealed record CgReport(int Iterations, double[] RelativeResiduals)
{
    public double MaxResidual => RelativeResiduals.Length == 0 ? 0 : RelativeResiduals.Max();

    /// <summary>The reports of blocks of right-hand sides as one: the most iterations any block took,
    /// the residuals side by side.</summary>
    public static CgReport Concat(IReadOnlyList<CgReport> blocks) =>
        blocks.Count == 1 ? blocks[0] : new(blocks.Max(b => b.Iterations), blocks.SelectMany(b => b.RelativeResiduals).ToArray());
}

/// <summary>The inverse-HVP solvers on float64 matrices whose ROWS are vectors (right-hand sides).
/// <c>hvp</c> maps [m, P] → [m, P] (the curvature, without the damping); the damping λ is added here.</summary>
public static class HvpSolvers
{
    /// <summary>The rows of <paramref name="b"/> [m, P] solved <paramref name="block"/> rows at a time
    /// by <paramref name="solve"/>(rows, progress label), each block's result copied into its rows of
    /// one [m, P] float64 result; <paramref name="afterBlock"/> runs after each block (to collect its
    /// report). For solvers whose rows' iterates are independent of each other, the result is the
    /// one-solve result, and the working set is one block's whatever m.</summary>
    public static Tensor SolveInBlocks(Tensor b, int block, Func<Tensor, string, Tensor> solve, Action? afterBlock = null)
    {
        long m = b.shape[0];
        var solved = torch.empty(m, b.shape[1], dtype: ScalarType.Float64, device: b.device);
        for (long b0 = 0; b0 == 0 || b0 < m; b0 += block)   // one (empty) solve when there are no rows
        {
            long len = Math.Min(block, m - b0);
            string label = m <= block ? "queries" : $"queries {b0 + 1}-{b0 + len} of {m}";
            using var scope = NewDisposeScope();
            solved.narrow(0, b0, len).copy_(solve(b.narrow(0, b0, len), label));
            afterBlock?.Invoke();
        }
        return solved;
    }

    /// <summary>Batched conjugate gradient: solves (H + λI) X = B for every row of B at once. Columns
    /// that converged (relative residual ≤ tol) drop out of later HVPs.</summary>
    public static (Tensor X, CgReport Report) ConjugateGradient(Func<Tensor, Tensor> hvp, Tensor b, double damping, double tol, int maxIterations,
        ProgressReporter? progress = null)
    {
        long m = b.shape[0];
        var x = torch.zeros_like(b);
        var r = b.clone();
        var p = b.clone();
        var rs = (r * r).sum(new long[] { 1 });
        var bnorm = rs.sqrt().clamp_min(1e-300);
        var rel = (rs.sqrt() / bnorm).cpu().data<double>().ToArray();
        int it = 0;
        while (it < maxIterations && rel.Any(v => v > tol))
        {
            it++;
            using var scope = NewDisposeScope();
            var active = Enumerable.Range(0, (int)m).Where(i => rel[i] > tol).Select(i => (long)i).ToArray();
            var ai = torch.tensor(active, device: b.device);
            var pa = p.index_select(0, ai);
            // Every Scalar is held for the iteration (implicit ones may be finalised mid-call).
            using var dampS = damping.ToScalar();
            using var one = 1.0.ToScalar();
            var apa = hvp(pa).add_(pa, alpha: dampS);
            var pap = (pa * apa).sum(new long[] { 1 });
            double minCurv = pap.min().item<double>();
            if (!(minCurv > 0))
                throw new InfluenceSharpException($"if-cg: H + λI is not positive definite (pᵀ(H+λI)p = {minCurv:G3} along a CG direction); raise --damping or use --hessian gauss-newton");
            var rsa = rs.index_select(0, ai);
            var alpha = (rsa / pap).unsqueeze(1);
            var xa = x.index_select(0, ai).add_(alpha * pa, one);
            var ra = r.index_select(0, ai).sub_(alpha * apa);
            var rsNew = (ra * ra).sum(new long[] { 1 });
            var pn = ra.add((rsNew / rsa).unsqueeze(1) * pa, one);
            x.index_copy_(0, ai, xa); r.index_copy_(0, ai, ra); p.index_copy_(0, ai, pn); rs.index_copy_(0, ai, rsNew);
            var relA = (rsNew.sqrt() / bnorm.index_select(0, ai)).cpu().data<double>().ToArray();
            for (int i = 0; i < active.Length; i++) rel[active[i]] = relA[i];
            progress?.Update(it, $"max residual {rel.Max():G3} ({rel.Count(v => v > tol)} of {m} unconverged)");
        }
        progress?.Complete($"{it} iterations, max residual {(m == 0 ? 0 : rel.Max()):G3}");
        return (x, new CgReport(it, rel));
    }

    /// <summary>LiSSA (Koh and Liang 2017's form, as dattri): h_0 = b, h_j = b + (I − (H_j + λI)/s) h_{j−1}
    /// with H_j the curvature on the j-th minibatch (<paramref name="hvpOnBatch"/>(v, j)); result h_J / s,
    /// averaged over repetitions. Stops with an error when ‖h_j‖ leaves the bound 10(j+1)‖b‖ that a
    /// convergent recursion (s ≥ the largest eigenvalue) keeps, or is not finite.</summary>
    public static Tensor Lissa(Func<Tensor, int, int, Tensor> hvpOnBatch, Tensor b, double damping, double scale, int depth, int repetitions,
        ProgressReporter? progress = null)
    {
        var acc = torch.zeros_like(b);
        var bnorm = b.norm(1, true);
        for (int rep = 0; rep < repetitions; rep++)
        {
            var h = b.clone();
            for (int j = 1; j <= depth; j++)
            {
                using var scope = NewDisposeScope();
                using var dampS = damping.ToScalar();
                using var one = 1.0.ToScalar();
                using var negInvScale = (-1.0 / scale).ToScalar();
                using var bound = (10.0 * (j + 1)).ToScalar();
                var hh = hvpOnBatch(h, rep, j).add_(h, alpha: dampS);
                var next = b.add(h, one).add_(hh, alpha: negInvScale);
                var norms = next.norm(1, true);
                double worst = norms.sub(bnorm.mul(bound)).max().item<double>();
                if (!double.IsFinite(worst) || worst > 0)
                    throw new InfluenceSharpException($"if-lissa diverged at step {j} of {depth} (‖h‖ = {norms.max().item<double>():G3}, ‖g‖ = {bnorm.max().item<double>():G3}): the scale {scale} is below the largest eigenvalue of H + λI; use a larger --lissa-scale");
                h.copy_(next);
                progress?.Update((long)rep * depth + j, $"‖h‖/s max {norms.max().item<double>() / scale:G3}");
            }
            using var invScale = (1.0 / scale).ToScalar();
            acc.add_(h, alpha: invScale);
        }
        progress?.Complete();
        using var reps = ((double)repetitions).ToScalar();
        return acc.div_(reps);
    }

    /// <summary>Arnoldi iteration (Schioppa et al. 2022) with full re-orthogonalisation from a seeded
    /// random start: builds an orthonormal Krylov basis Q and the Hessenberg matrix Qᵀ H Q (symmetric
    /// for a symmetric H, so its symmetric part is eigendecomposed), and returns the Ritz pairs with
    /// the <paramref name="topK"/> largest eigenvalues: values [k] and vectors [P, k], float64.
    /// Stops early when the Krylov space is invariant (then the pairs are exact).</summary>
    public static (Tensor Values, Tensor Vectors) Arnoldi(Func<Tensor, Tensor> hvp, long numParams, int iterations, int topK, int seed,
        Device device, ProgressReporter? progress = null)
    {
        var gen = new Generator((ulong)seed);
        var q0 = torch.randn(new long[] { numParams }, dtype: ScalarType.Float64, generator: gen).to(device);
        var basis = new List<Tensor> { q0.div(q0.norm()) };
        using var one = 1.0.ToScalar();
        int n = (int)Math.Min(iterations, numParams);
        var hess = new double[n + 1, n];
        int k = 0;
        for (int j = 0; j < n; j++)
        {
            using var scope = NewDisposeScope();
            var w = hvp(basis[j].unsqueeze(0)).squeeze(0);
            double before = w.norm().item<double>();
            var qm = torch.stack(basis);                                 // [j+1, P]
            for (int pass = 0; pass < 2; pass++)
            {
                var h = qm.matmul(w);
                w = w.sub(qm.mT.matmul(h));
                var hv = h.cpu().data<double>().ToArray();
                for (int i = 0; i <= j; i++) hess[i, j] += hv[i];
            }
            double beta = w.norm().item<double>();
            hess[j + 1, j] = beta;
            k = j + 1;
            progress?.Update(k);
            if (k >= numParams || beta <= 1e-10 * Math.Max(before, 1e-300)) break;
            using var betaS = beta.ToScalar();
            basis.Add(w.div(betaS).MoveToOuterDisposeScope());
        }
        progress?.Complete();
        using var s = NewDisposeScope();
        var flat = new double[k * k];
        for (int i = 0; i < k; i++) for (int j = 0; j < k; j++) flat[i * k + j] = hess[i, j];
        var t = torch.tensor(flat, new long[] { k, k }, dtype: ScalarType.Float64);
        using var half = 0.5.ToScalar();
        t = t.add(t.mT, one).mul(half);
        var (vals, vecs) = torch.linalg.eigh(t);                           // ascending
        int keep = Math.Min(topK, k);
        var order = torch.arange(k - 1, k - 1 - keep, -1, dtype: ScalarType.Int64);
        var values = vals.index_select(0, order);
        var ritz = torch.stack(basis.Take(k)).mT.matmul(vecs.index_select(1, order).to(device));   // [P, keep]
        foreach (var q in basis) q.Dispose();
        return (values.to(device).MoveToOuterDisposeScope(), ritz.MoveToOuterDisposeScope());
    }
}
