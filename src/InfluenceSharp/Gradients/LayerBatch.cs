using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>One tracked layer's view of a batch: inputs a [B, T, In] and output gradients g [B, T, Out].
/// T = 1 for a Linear layer applied once per example, so its per-example gradient g aᵀ has rank one
/// and never needs to be formed as an Out×In matrix.</summary>
public sealed class LayerBatch
{
    public LayerBatch(TrackedLayer layer, Tensor a, Tensor g) { Layer = layer; A = a; G = g; }

    public TrackedLayer Layer { get; }
    public Tensor A { get; }
    public Tensor G { get; }
    public long BatchSize => A.shape[0];
    public bool RankOne => A.shape[1] == 1;

    /// <summary>Per-example gradients in an eigenbasis, Q_Sᵀ G Q_A [B, Out, In] (no basis: G), in
    /// whichever order costs fewer FLOPs: rotate a and g at every position and then contract over
    /// positions (2T(In² + Out²) + 2T·Out·In per example), or contract first and rotate the Out×In
    /// result (2T·Out·In + 2(Out²·In + Out·In²)). For SmallCnn's conv2 (T = 196, 32×145) the
    /// second is 3× cheaper.</summary>
    public Tensor Rotated(Tensor? qa, Tensor? qs)
    {
        if (qa is null || qs is null) return PerExample();
        double t = A.shape[1], o = G.shape[2], i = A.shape[2];
        if (t * (i * i + o * o) <= o * o * i + o * i * i)
            return G.matmul(qs).transpose(1, 2).bmm(A.matmul(qa));
        return qs.mT.matmul(PerExample()).matmul(qa);
    }

    /// <summary>Per-example gradients [B, Out, In] = Σ_t g_t a_tᵀ (one batched GEMM). MKL's batched
    /// GEMM is up to 3× faster when the wider side is the result's rows (SmallCnn conv1: 16×10 per
    /// example, 9 → 3 ms per batch of 512), so a wide Out is computed as (Σ_t a_t g_tᵀ)ᵀ.</summary>
    public Tensor PerExample() => RankOne
        ? G.squeeze(1).unsqueeze(2) * A.squeeze(1).unsqueeze(1)
        : G.shape[2] > A.shape[2] ? A.transpose(1, 2).bmm(G).transpose(1, 2) : G.transpose(1, 2).bmm(A);

    /// <summary>Default bound on the bytes of per-example conv gradients [b, Out, In] (or Gram
    /// matrices) that one layer materialises at once: 1 GiB.</summary>
    public const long DefaultMemoryBytes = 1L << 30;

    /// <summary>Examples [start, start+count) of this batch (views, no copy).</summary>
    public LayerBatch Slice(long start, long count) =>
        start == 0 && count == BatchSize ? this : new LayerBatch(Layer, A.narrow(0, start, count), G.narrow(0, start, count));

    /// <summary>How many examples' [Out, In] per-example gradients fit in <paramref name="budgetBytes"/>
    /// (at least one).</summary>
    public long ExamplesWithin(long budgetBytes, long bytesPerExample) =>
        Math.Max(1, Math.Min(BatchSize, budgetBytes / Math.Max(1, bytesPerExample)));

    private long ElementSize => A.ElementSize;

    /// <summary>The batch in consecutive slices whose per-example gradients [b, Out, In] each fit in
    /// <paramref name="budgetBytes"/> (one slice, the batch itself, when the whole batch fits; a
    /// rank-one layer never forms them, so it is never split).</summary>
    public IEnumerable<LayerBatch> Chunks(long budgetBytes)
    {
        long n = BatchSize;
        long per = RankOne ? n : ExamplesWithin(budgetBytes, G.shape[2] * A.shape[2] * ElementSize);
        for (long s = 0; s < n; s += per) yield return Slice(s, Math.Min(per, n - s));
    }

    /// <summary>True when ‖Σ_t g_t a_tᵀ‖²_F is cheaper through the position Gram matrices,
    /// Σ_{t,t'} (g_t·g_t')(a_t·a_t') (2T²(Out+In) FLOPs per example), than by forming the Out×In
    /// gradient (2T·Out·In): when T(Out+In) &lt; Out·In, i.e. few positions against wide layers
    /// (ResNet-18's layer3/layer4 at 32×32 inputs: T = 4 and 1).</summary>
    public bool GramCheaper
    {
        get
        {
            double t = A.shape[1], o = G.shape[2], i = A.shape[2];
            return t * (o + i) < o * i;
        }
    }

    /// <summary>‖G_b‖²_F per example [B] for G_b = Σ_t g_t a_tᵀ, never holding more than
    /// <paramref name="budgetBytes"/> of per-example matrices: rank-one layers as ‖g‖²‖a‖², others by
    /// the cheaper of the position-Gram form and the explicit per-example gradients, in slices of the
    /// batch. <paramref name="forceGram"/> picks the Gram form (tests); null = by cost.</summary>
    public Tensor SquaredNorms(long budgetBytes = DefaultMemoryBytes, bool? forceGram = null)
    {
        if (RankOne) return G.squeeze(1).square().sum(1) * A.squeeze(1).square().sum(1);
        bool gram = forceGram ?? GramCheaper;
        long t = A.shape[1], o = G.shape[2], i = A.shape[2];
        long per = ExamplesWithin(budgetBytes, (gram ? 2 * t * t : o * i) * ElementSize);
        var parts = new List<Tensor>();
        for (long s = 0; s < BatchSize; s += per)
        {
            var c = Slice(s, Math.Min(per, BatchSize - s));
            if (gram)
            {
                var gg = c.G.bmm(c.G.mT);                  // [b, T, T]
                var aa = c.A.bmm(c.A.mT);
                parts.Add(gg.mul_(aa).sum(new long[] { 1, 2 }));
            }
            else parts.Add(c.PerExample().square().sum(new long[] { 1, 2 }));
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
    }

    /// <summary>Σ over examples and positions of a aᵀ [In, In]. With a bias the last column of a is
    /// all ones, so that row and column are column sums and a count, and the GEMM runs on the even
    /// width (MKL: SmallCnn fc1 1569² 22 ms, 1568² 14 ms per batch of 512). Narrow inputs (a first
    /// conv layer's patches, e.g. [288,000 × 26]) keep the ones column in the GEMM instead: there the
    /// separate column sums over a strided view cost more than the GEMM itself (3 ms against 5).</summary>
    public Tensor ACovariance()
    {
        var a = A.reshape(-1, A.shape[2]);
        if (!Layer.HasBias || a.shape[1] <= NarrowWidth) return Gram(a);
        long n = a.shape[0], d = a.shape[1] - 1;
        var x = a.narrow(1, 0, d);
        var result = torch.empty(d + 1, d + 1, dtype: a.dtype, device: a.device);
        result.narrow(0, 0, d).narrow(1, 0, d).copy_(Gram(x));
        var sums = x.sum(new long[] { 0 });
        result.narrow(0, d, 1).narrow(1, 0, d).copy_(sums.unsqueeze(0));
        result.narrow(0, 0, d).narrow(1, d, 1).copy_(sums.unsqueeze(1));
        using var count = ((double)n).ToScalar();
        result.narrow(0, d, 1).narrow(1, d, 1).fill_(count);
        return result;
    }

    /// <summary>Widths up to which <see cref="ACovariance"/> runs the GEMM over the bias column too.</summary>
    internal const long NarrowWidth = 64;

    /// <summary>Σ over examples and positions of g gᵀ [Out, Out].</summary>
    public Tensor SCovariance() => Gram(G.reshape(-1, G.shape[2]));

    /// <summary>xᵀx for x [N, d]. For a tall, narrow x (conv layers: N = B·T rows) one GEMM with a
    /// d×d result parallelises poorly; 16 batched slices summed afterwards are 1.2-1.7× faster.</summary>
    internal static Tensor Gram(Tensor x)
    {
        const long slices = 16;
        long n = x.shape[0], d = x.shape[1], m = n / slices * slices;
        if (n < 64 * d) return x.mT.matmul(x);
        var v = x.narrow(0, 0, m).view(slices, m / slices, d);
        var sum = v.transpose(1, 2).bmm(v).sum(new long[] { 0 });
        if (m < n) { var rest = x.narrow(0, m, n - m); sum.add_(rest.mT.matmul(rest)); }
        return sum;
    }
}
