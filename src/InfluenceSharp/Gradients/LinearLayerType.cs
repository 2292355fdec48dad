using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>nn.Linear: gradient [out_features, in_features (+1)]; every leading dimension of the input
/// but the batch's is a position.</summary>
public sealed class LinearLayerType : TrackedLayerType
{
    public override string Name => "Linear";
    public override int Order => 10;
    public override bool SeveralPositions => false;
    public override bool Handles(nn.Module module) => module is Linear;

    public override (long Out, long InNoBias, bool HasBias) Shape(string name, nn.Module module)
    {
        var lin = (Linear)module;
        return (lin.weight!.shape[0], lin.weight.shape[1], lin.bias is not null);
    }

    public override Tensor Activations(TrackedLayer layer, Tensor input) =>
        WithBiasColumn(layer, input.reshape(input.shape[0], -1, input.shape[^1]));

    public override Tensor OutputGradients(TrackedLayer layer, Tensor gradOutput) =>
        gradOutput.reshape(gradOutput.shape[0], -1, gradOutput.shape[^1]);

    public override Tensor[] Parameters(nn.Module module)
    {
        var lin = (Linear)module;
        return lin.bias is null ? new[] { (Tensor)lin.weight! } : new Tensor[] { lin.weight!, lin.bias };
    }
}
