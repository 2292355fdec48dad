using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>One tracked layer's view of a batch: inputs a [B, T, In] and output gradients g [B, T, Out].
/// T = 1 for a Linear layer applied once per example, so its per-example gradient g aᵀ has rank one
/// and never needs to be formed as an Out×In matrix. A layer whose inputs are one-hot (an embedding:
/// a_t = onehot(x_t)) keeps the indices <see cref="Ids"/> [B, T] instead, so that its per-example
/// gradient (g_t added into column x_t), its Gram matrices ([x_t = x_t']) and its products with a
/// matrix (rows x_t) cost nothing in the vocabulary size; <see cref="A"/> is then formed only on
/// request, and refused above <see cref="DenseOneHotLimit"/> columns.</summary>
public sealed class LayerBatch
{
    private readonly Tensor? a;

    public LayerBatch(TrackedLayer layer, Tensor a, Tensor g) { Layer = layer; this.a = a; G = g; }

    private LayerBatch(TrackedLayer layer, Tensor? a, Tensor? ids, Tensor g) { Layer = layer; this.a = a; Ids = ids; G = g; }

    /// <summary>A batch of a layer with one-hot inputs: a_t = onehot(ids_t) over the layer's In columns.</summary>
    public static LayerBatch OneHot(TrackedLayer layer, Tensor ids, Tensor g) => new(layer, null, ids, g);

    /// <summary>Widest one-hot input that <see cref="A"/> forms densely ([B, T, In]); wider ones
    /// (GPT-2's 50,257 tokens) are refused there, so a computation without a sparse form says so.</summary>
    public const long DenseOneHotLimit = 4096;

    public TrackedLayer Layer { get; }
    /// <summary>The input features [B, T, In] (for one-hot inputs formed from <see cref="Ids"/> anew on
    /// every use, in the caller's dispose scope).</summary>
    public Tensor A => a ?? DenseOneHot();
    /// <summary>The one-hot inputs' indices [B, T] (int64), or null for dense inputs.</summary>
    public Tensor? Ids { get; }
    public bool IsOneHot => Ids is not null;
    public Tensor G { get; }
    public long BatchSize => G.shape[0];
    /// <summary>Positions T per example.</summary>
    public long Positions => G.shape[1];
    /// <summary>Input features per position (A's last dimension).</summary>
    public long InWidth => Ids is not null ? Layer.In : a!.shape[2];
    public bool RankOne => Positions == 1;

    private Tensor DenseOneHot()
    {
        if (Layer.In > DenseOneHotLimit)
            throw new InfluenceSharpException($"layer '{Layer.Name}' ({Layer.Type.Name}, {Layer.In} one-hot input columns): this computation has no sparse form " +
                $"for it and would form dense [batch, tokens, {Layer.In}] inputs; leave the layer out with --layers (e.g. --layers h. for the transformer blocks alone)");
        return nn.functional.one_hot(Ids!, Layer.In).to(G.dtype);
    }

    /// <summary>a_t M for every position [B, T, k], M [In, k]: for one-hot inputs the rows x_t of M.</summary>
    public Tensor ATimes(Tensor m) =>
        Ids is null ? A.matmul(m) : m.index_select(0, Ids.reshape(-1)).view(BatchSize, Positions, m.shape[1]);

    /// <summary>a_t·a_t' for every pair of positions of each example [B, T, T] ([x_t = x_t'] for one-hot inputs).</summary>
    public Tensor AGram() =>
        Ids is null ? A.bmm(A.mT) : Ids.unsqueeze(2).eq(Ids.unsqueeze(1)).to(G.dtype);

    /// <summary>The same batch with each stored tensor (ids or inputs, and output gradients) mapped.</summary>
    internal LayerBatch Map(Func<Tensor, Tensor> f) => Ids is not null ? new(Layer, null, f(Ids), f(G)) : new(Layer, f(A), null, f(G));

    /// <summary>The stored tensors: the inputs (or ids) and the output gradients.</summary>
    internal IEnumerable<Tensor> Stored() { yield return Ids ?? A; yield return G; }

    /// <summary>Per-example gradients in an eigenbasis, Q_Sᵀ G Q_A [B, Out, In] (no basis: G), in
    /// whichever order costs fewer FLOPs: rotate a and g at every position and then contract over
    /// positions (2T(In² + Out²) + 2T·Out·In per example), or contract first and rotate the Out×In
    /// result (2T·Out·In + 2(Out²·In + Out·In²)). For SmallCnn's conv2 (T = 196, 32×145) the
    /// second is 3× cheaper.</summary>
    public Tensor Rotated(Tensor? qa, Tensor? qs)
    {
        if (qa is null || qs is null) return PerExample();
        double t = Positions, o = G.shape[2], i = InWidth;
        if (Ids is not null || t * (i * i + o * o) <= o * o * i + o * i * i)
            return G.matmul(qs).transpose(1, 2).bmm(ATimes(qa));
        return qs.mT.matmul(PerExample()).matmul(qa);
    }

    /// <summary>Per-example gradients [B, Out, In] = Σ_t g_t a_tᵀ (one batched GEMM). MKL's batched
    /// GEMM is up to 3× faster when the wider side is the result's rows (SmallCnn conv1: 16×10 per
    /// example, 9 → 3 ms per batch of 512), so a wide Out is computed as (Σ_t a_t g_tᵀ)ᵀ.</summary>
    public Tensor PerExample() => Ids is not null ? OneHotPerExample()
        : RankOne ? G.squeeze(1).unsqueeze(2) * A.squeeze(1).unsqueeze(1)
        : G.shape[2] > A.shape[2] ? A.transpose(1, 2).bmm(G).transpose(1, 2) : G.transpose(1, 2).bmm(A);

    /// <summary>Σ_t g_t onehot(x_t)ᵀ: g_t added into column x_t (rows of the transposed result),
    /// exact, without the [B, T, In] one-hot inputs.</summary>
    private Tensor OneHotPerExample() => OneHotGradients(Ids!, G, Layer.In);

    /// <summary>Per-example gradients [n, Out, columns] of one-hot inputs: each position's output
    /// gradient g [n, T, Out] added into the column of its id [n, T].</summary>
    internal static Tensor OneHotGradients(Tensor ids, Tensor g, long columns)
    {
        long n = g.shape[0], t = g.shape[1], o = g.shape[2];
        var result = torch.zeros(n, columns, o, dtype: g.dtype, device: g.device);
        return result.scatter_add_(1, ids.unsqueeze(2).expand(n, t, o), g).transpose(1, 2);
    }

    /// <summary>Default bound on the bytes of per-example conv gradients [b, Out, In] (or Gram
    /// matrices) that one layer materialises at once: 1 GiB.</summary>
    public const long DefaultMemoryBytes = 1L << 30;

    /// <summary>Examples [start, start+count) of this batch (views, no copy).</summary>
    public LayerBatch Slice(long start, long count) =>
        start == 0 && count == BatchSize ? this : Map(x => x.narrow(0, start, count));

    /// <summary>How many examples' [Out, In] per-example gradients fit in <paramref name="budgetBytes"/>
    /// (at least one).</summary>
    public long ExamplesWithin(long budgetBytes, long bytesPerExample) =>
        Math.Max(1, Math.Min(BatchSize, budgetBytes / Math.Max(1, bytesPerExample)));

    private long ElementSize => G.ElementSize;

    /// <summary>The batch in consecutive slices whose per-example gradients [b, Out, In] each fit in
    /// <paramref name="budgetBytes"/> (one slice, the batch itself, when the whole batch fits; a
    /// rank-one layer never forms them, so it is never split).</summary>
    public IEnumerable<LayerBatch> Chunks(long budgetBytes)
    {
        long n = BatchSize;
        long per = RankOne && Ids is null ? n : ExamplesWithin(budgetBytes, G.shape[2] * InWidth * ElementSize);
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
            double t = Positions, o = G.shape[2], i = InWidth;
            return t * (o + (Ids is null ? i : 1)) < o * i;
        }
    }

    /// <summary>‖G_b‖²_F per example [B] for G_b = Σ_t g_t a_tᵀ, never holding more than
    /// <paramref name="budgetBytes"/> of per-example matrices: rank-one layers as ‖g‖²‖a‖², others by
    /// the cheaper of the position-Gram form and the explicit per-example gradients, in slices of the
    /// batch. <paramref name="forceGram"/> picks the Gram form (tests); null = by cost.</summary>
    public Tensor SquaredNorms(long budgetBytes = DefaultMemoryBytes, bool? forceGram = null)
    {
        if (RankOne) return G.squeeze(1).square().sum(1) * (Ids is null ? A.squeeze(1).square().sum(1) : torch.ones(BatchSize, dtype: G.dtype, device: G.device));
        bool gram = forceGram ?? GramCheaper;
        long t = Positions, o = G.shape[2], i = InWidth;
        long per = ExamplesWithin(budgetBytes, (gram ? 2 * t * t : o * i) * ElementSize);
        var parts = new List<Tensor>();
        for (long s = 0; s < BatchSize; s += per)
        {
            var c = Slice(s, Math.Min(per, BatchSize - s));
            if (gram)
            {
                var gg = c.G.bmm(c.G.mT);                  // [b, T, T]
                var aa = c.AGram();
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
        if (Ids is not null)
        {
            // One-hot inputs: the token counts on the diagonal (exact), still In×In.
            if (Layer.In > DenseOneHotLimit)
                throw new InfluenceSharpException($"layer '{Layer.Name}' ({Layer.Type.Name}, {Layer.In} one-hot input columns): K-FAC/EK-FAC keep a dense {Layer.In}×{Layer.In} " +
                    "activation covariance and eigenbasis for it; leave the layer out with --layers (e.g. --layers h. for the transformer blocks alone)");
            return torch.diag(torch.bincount(Ids.reshape(-1), minlength: Layer.In).to(G.dtype));
        }
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
