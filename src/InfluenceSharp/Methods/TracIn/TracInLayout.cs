using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>A run of columns of a TracIn feature row. With ALen &gt; 0 it is one gradient
/// Σ_t g_t a_tᵀ over <see cref="Positions"/> positions t stored as its factors [g_1..g_T (T·GLen) |
/// a_1..a_T (T·ALen)], whose inner products are Σ_{t,t'} (g_t·g'_t')(a_t·a'_t') — (g·g')(a·a') for a
/// rank-one (T = 1) Linear gradient; with ALen = 0 it is GLen plain coordinates (a flattened or
/// projected gradient). <see cref="OneHot"/>: each a_t is onehot(x_t) over ALen columns and is stored
/// as the index x_t (one number; a_t·a'_t' = [x_t = x'_t']), so an embedding's factors do not grow
/// with its vocabulary.</summary>
internal readonly record struct Segment(int Checkpoint, long Start, long GLen, long ALen, long Positions = 1, bool OneHot = false)
{
    /// <summary>Stored numbers per position on the a side.</summary>
    public long AStored => OneHot ? 1 : ALen;
    public long Width => Positions * (GLen + AStored);
    public bool Factored => ALen > 0;
}

/// <summary>
/// TracIn scores from feature rows laid out as segments per checkpoint:
/// score(q, z) = Σ_c w_c Σ_{s∈c} ⟨q_s, z_s⟩, where a factored segment contributes (g·g')(a·a') —
/// the product taken per checkpoint and per layer, then summed (the product of sums
/// (Σ_c g·g')(Σ_c a·a') is a different, wrong quantity). With normalisation each checkpoint's inner
/// product is divided by the two gradient norms (GradCos / TracIn-cos).
/// </summary>
internal sealed class TracInLayout
{
    public TracInLayout(IReadOnlyList<Segment> segments, double[] weights, bool normalize)
    {
        Segments = segments; Weights = weights; Normalize = normalize;
    }

    public IReadOnlyList<Segment> Segments { get; }
    /// <summary>w_c per checkpoint (η_c for factored rows; 1 when √η_c is folded into the rows).</summary>
    public double[] Weights { get; }
    public bool Normalize { get; }
    public long Dim => Segments.Sum(s => s.Width);

    /// <summary>[n_q, n_z] scores.</summary>
    public Tensor Pairwise(Tensor q, Tensor z)
    {
        Tensor? total = null;
        for (int c = 0; c < Weights.Length; c++)
        {
            Tensor? sc = null;
            foreach (var s in Segments.Where(s => s.Checkpoint == c))
            {
                var part = SegmentPairwise(s, q, z);
                sc = sc is null ? part : sc + part;
            }
            if (sc is null) continue;
            if (Normalize) sc = sc / torch.outer(Norms(q, c), Norms(z, c));
            sc = sc * Weights[c];
            total = total is null ? sc : total + sc;
        }
        return total ?? torch.zeros(q.shape[0], z.shape[0], dtype: q.dtype, device: q.device);
    }

    /// <summary>Bound on the bytes of the [n_q·T, n_z·T] position products a multi-position segment
    /// forms at once (the training rows are taken in slices to respect it).</summary>
    public long MemoryBytes { get; init; } = Gradients.LayerBatch.DefaultMemoryBytes;

    private Tensor SegmentPairwise(Segment s, Tensor q, Tensor z)
    {
        if (!s.Factored) return q.narrow(1, s.Start, s.GLen).matmul(z.narrow(1, s.Start, s.GLen).mT);
        long t = s.Positions, nq = q.shape[0], nz = z.shape[0];
        if (t == 1)
            return q.narrow(1, s.Start, s.GLen).matmul(z.narrow(1, s.Start, s.GLen).mT) *
                   AProducts(s, q.narrow(1, s.Start + s.GLen, s.AStored), z.narrow(1, s.Start + s.GLen, s.AStored));
        var gq = q.narrow(1, s.Start, t * s.GLen).reshape(nq * t, s.GLen);
        var aq = q.narrow(1, s.Start + t * s.GLen, t * s.AStored).reshape(nq * t, s.AStored);
        long per = Math.Max(1, Math.Min(nz, MemoryBytes / Math.Max(1, 2 * nq * t * t * q.ElementSize)));
        var parts = new List<Tensor>();
        for (long start = 0; start < nz; start += per)
        {
            long m = Math.Min(per, nz - start);
            var zc = z.narrow(0, start, m);
            var gg = gq.matmul(zc.narrow(1, s.Start, t * s.GLen).reshape(m * t, s.GLen).mT);          // [n_q·T, m·T]
            var aa = AProducts(s, aq, zc.narrow(1, s.Start + t * s.GLen, t * s.AStored).reshape(m * t, s.AStored));
            parts.Add(gg.mul_(aa).view(nq, t, m, t).sum(new long[] { 1, 3 }));
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 1);
    }

    /// <summary>a_t·a'_t' for rows of positions [n, AStored] × [m, AStored] → [n, m] (one-hot: equal indices).</summary>
    private static Tensor AProducts(Segment s, Tensor a, Tensor b) =>
        s.OneHot ? a.eq(b.mT).to(a.dtype) : a.matmul(b.mT);

    /// <summary>Per-example [n, Out, In] gradients Σ_t g_t a_tᵀ of a factored segment.</summary>
    private static Tensor Gradient(Segment s, Tensor x)
    {
        long n = x.shape[0], t = s.Positions;
        var g = x.narrow(1, s.Start, t * s.GLen).reshape(n, t, s.GLen);
        if (s.OneHot)
        {
            var ids = x.narrow(1, s.Start + t * s.GLen, t).to(ScalarType.Int64);
            return LayerBatch.OneHotGradients(ids, g, s.ALen);
        }
        var a = x.narrow(1, s.Start + t * s.GLen, t * s.ALen).reshape(n, t, s.ALen);
        return t == 1 ? g.squeeze(1).unsqueeze(2) * a.squeeze(1).unsqueeze(1) : g.mT.bmm(a);
    }

    /// <summary>Width of <see cref="Expand"/>'s rows: Σ over segments of GLen·ALen (factored) or GLen.</summary>
    public long ExpandedDim => Segments.Sum(s => s.Factored ? s.GLen * s.ALen : s.GLen);

    /// <summary>Rows whose plain inner products are the scores (no normalisation): per segment
    /// vec(g aᵀ) for a factored one, the coordinates otherwise, times w_c on one side
    /// (<paramref name="weighted"/>) so that ⟨Expand(q, false), Expand(z, true)⟩ = score(q, z).</summary>
    public Tensor Expand(Tensor x, bool weighted)
    {
        if (Normalize) throw new InvalidOperationException("normalised TracIn scores are not inner products of fixed rows");
        var parts = new List<Tensor>();
        foreach (var s in Segments)
        {
            var v = s.Factored ? Gradient(s, x).reshape(x.shape[0], -1) : x.narrow(1, s.Start, s.GLen);
            parts.Add(weighted ? v * Weights[s.Checkpoint] : v);
        }
        return torch.cat(parts, 1);
    }

    /// <summary>[n] self-influence: Σ_c w_c ‖∇_c‖² (normalised: Σ_c w_c for non-zero gradients).</summary>
    public Tensor Self(Tensor z)
    {
        Tensor total = torch.zeros(z.shape[0], dtype: z.dtype, device: z.device);
        for (int c = 0; c < Weights.Length; c++)
        {
            var sq = SquaredNorms(z, c);
            total = total + Weights[c] * (Normalize ? sq.gt(0).to(z.dtype) : sq);
        }
        return total;
    }

    /// <summary>‖∇_c‖² per row from the segments of checkpoint c (rank-one: ‖g‖²‖a‖²; T positions:
    /// through the T×T Gram matrices).</summary>
    public Tensor SquaredNorms(Tensor x, int c)
    {
        Tensor total = torch.zeros(x.shape[0], dtype: x.dtype, device: x.device);
        foreach (var s in Segments.Where(s => s.Checkpoint == c))
        {
            if (!s.Factored) { total = total + x.narrow(1, s.Start, s.GLen).square().sum(1); continue; }
            long n = x.shape[0], t = s.Positions;
            var g = x.narrow(1, s.Start, t * s.GLen).reshape(n, t, s.GLen);
            var a = x.narrow(1, s.Start + t * s.GLen, t * s.AStored).reshape(n, t, s.AStored);
            // Σ_{t,t'} (g_t·g_t')(a_t·a_t') = ‖Σ_t g_t a_tᵀ‖²_F (T = 1: ‖g‖²‖a‖²).
            var aa = s.OneHot ? a.eq(a.mT).to(x.dtype) : a.bmm(a.mT);
            total = total + (t == 1 && !s.OneHot ? g.squeeze(1).square().sum(1) * a.squeeze(1).square().sum(1)
                : g.bmm(g.mT).mul_(aa).sum(new long[] { 1, 2 }));
        }
        return total;
    }

    /// <summary>Gradient norms of checkpoint c, zeros replaced by +∞ so a zero gradient scores 0.</summary>
    private Tensor Norms(Tensor x, int c)
    {
        var n = SquaredNorms(x, c).sqrt();
        return n.masked_fill(n.eq(0), double.PositiveInfinity);
    }
}
