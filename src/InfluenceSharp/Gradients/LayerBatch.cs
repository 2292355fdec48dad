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

    /// <summary>Per-example gradients [B, Out, In] = Σ_t g_t a_tᵀ (one batched GEMM).</summary>
    public Tensor PerExample() => RankOne
        ? G.squeeze(1).unsqueeze(2) * A.squeeze(1).unsqueeze(1)
        : G.transpose(1, 2).bmm(A);
}
