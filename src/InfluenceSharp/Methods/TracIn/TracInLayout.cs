using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>A run of columns of a TracIn feature row. With ALen &gt; 0 it is one rank-one gradient
/// g aᵀ stored as its factors [g (GLen) | a (ALen)], whose inner products are (g·g')(a·a'); with
/// ALen = 0 it is GLen plain coordinates (a flattened or projected gradient).</summary>
internal readonly record struct Segment(int Checkpoint, long Start, long GLen, long ALen)
{
    public long Width => GLen + ALen;
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
                var part = s.ALen > 0
                    ? q.narrow(1, s.Start, s.GLen).matmul(z.narrow(1, s.Start, s.GLen).mT) *
                      q.narrow(1, s.Start + s.GLen, s.ALen).matmul(z.narrow(1, s.Start + s.GLen, s.ALen).mT)
                    : q.narrow(1, s.Start, s.GLen).matmul(z.narrow(1, s.Start, s.GLen).mT);
                sc = sc is null ? part : sc + part;
            }
            if (sc is null) continue;
            if (Normalize) sc = sc / torch.outer(Norms(q, c), Norms(z, c));
            sc = sc * Weights[c];
            total = total is null ? sc : total + sc;
        }
        return total ?? torch.zeros(q.shape[0], z.shape[0], dtype: q.dtype, device: q.device);
    }

    /// <summary>Width of <see cref="Expand"/>'s rows: Σ over segments of GLen·ALen (factored) or GLen.</summary>
    public long ExpandedDim => Segments.Sum(s => s.ALen > 0 ? s.GLen * s.ALen : s.GLen);

    /// <summary>Rows whose plain inner products are the scores (no normalisation): per segment
    /// vec(g aᵀ) for a factored one, the coordinates otherwise, times w_c on one side
    /// (<paramref name="weighted"/>) so that ⟨Expand(q, false), Expand(z, true)⟩ = score(q, z).</summary>
    public Tensor Expand(Tensor x, bool weighted)
    {
        if (Normalize) throw new InvalidOperationException("normalised TracIn scores are not inner products of fixed rows");
        var parts = new List<Tensor>();
        foreach (var s in Segments)
        {
            var g = x.narrow(1, s.Start, s.GLen);
            var v = s.ALen > 0 ? (g.unsqueeze(2) * x.narrow(1, s.Start + s.GLen, s.ALen).unsqueeze(1)).reshape(x.shape[0], -1) : g;
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

    /// <summary>‖∇_c‖² per row from the segments of checkpoint c (rank-one: ‖g‖²‖a‖²).</summary>
    public Tensor SquaredNorms(Tensor x, int c)
    {
        Tensor total = torch.zeros(x.shape[0], dtype: x.dtype, device: x.device);
        foreach (var s in Segments.Where(s => s.Checkpoint == c))
        {
            var g2 = x.narrow(1, s.Start, s.GLen).square().sum(1);
            total = total + (s.ALen > 0 ? g2 * x.narrow(1, s.Start + s.GLen, s.ALen).square().sum(1) : g2);
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
