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

    /// <summary>Per-example gradients [B, Out, In] = Σ_t g_t a_tᵀ (one batched GEMM).</summary>
    public Tensor PerExample() => RankOne
        ? G.squeeze(1).unsqueeze(2) * A.squeeze(1).unsqueeze(1)
        : G.transpose(1, 2).bmm(A);
}
