using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>
/// nn.Embedding (a lookup table weight [V, D]): its output at position t is row x_t of the weight, so
/// the gradient is Σ_t onehot(x_t) g_tᵀ, exact. Laid out as [Out = D, In = V]: the per-position
/// input features a_t are onehot(x_t) [V] (no bias) and g_t = ∂loss/∂output_t [D]; the parameter is
/// the weight transposed. Its layer batches keep the token ids, not the one-hot features
/// (<see cref="LayerBatch.OneHot"/>): per-example gradients add g_t into column x_t, Gram matrices
/// compare ids, projections take rows of the projection, so TracIn, TRAK and the Kronecker
/// projections cost nothing in V beyond the per-example gradient itself where it is formed. The A
/// covariance is the diagonal of token counts; K-FAC/EK-FAC keep it and its eigenbasis as dense V×V
/// matrices, so they refuse a vocabulary above <see cref="LayerBatch.DenseOneHotLimit"/>.
/// </summary>
public sealed class EmbeddingLayerType : TrackedLayerType
{
    public override string Name => "Embedding";
    public override int Order => 30;
    public override bool SeveralPositions => true;
    public override bool OneHotInputs => true;
    public override bool Handles(nn.Module module) => module is Embedding;

    public override (long Out, long InNoBias, bool HasBias) Shape(string name, nn.Module module)
    {
        var w = ((Embedding)module).weight!;
        return (w.shape[1], w.shape[0], false);
    }

    public override Tensor Activations(TrackedLayer layer, Tensor input)
    {
        var ids = input.reshape(input.shape[0], -1);
        var dtype = layer.Parameters()[0].dtype;
        return nn.functional.one_hot(ids, layer.InNoBias).to(dtype);
    }

    internal override LayerBatch Batch(TrackedLayer layer, Tensor input, Tensor gradOutput, Workspace? workspace) =>
        LayerBatch.OneHot(layer, input.reshape(input.shape[0], -1), OutputGradients(layer, gradOutput));

    public override Tensor OutputGradients(TrackedLayer layer, Tensor gradOutput) =>
        gradOutput.reshape(gradOutput.shape[0], -1, gradOutput.shape[^1]);

    /// <summary>The weight transposed ([D, V], a view).</summary>
    public override Tensor[] Parameters(nn.Module module) => new[] { ((Embedding)module).weight!.t() };

    public override bool WeightTransposed => true;

    /// <summary>The table itself [V, D].</summary>
    public override Tensor[] LeafParameters(nn.Module module) => new[] { (Tensor)((Embedding)module).weight! };
}
