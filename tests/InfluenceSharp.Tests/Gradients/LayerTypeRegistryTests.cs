using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Gradients;

/// <summary>A dense layer that is not nn.Linear (y = x Wᵀ + b), as a user's own module would be.</summary>
public sealed class Dense : nn.Module<Tensor, Tensor>
{
    public Parameter weight, bias;
    public Dense(Tensor w, Tensor b) : base("Dense")
    {
        weight = new Parameter(w.clone()); bias = new Parameter(b.clone());
        RegisterComponents();
    }
    public override Tensor forward(Tensor x) => x.matmul(weight.t()) + bias;
}

/// <summary>The layer type of <see cref="Dense"/>, defined only here, in the test assembly.</summary>
public sealed class DenseLayerType : TrackedLayerType
{
    public override string Name => "Dense";
    public override bool SeveralPositions => false;
    public override bool Handles(nn.Module module) => module is Dense;
    public override (long Out, long InNoBias, bool HasBias) Shape(string name, nn.Module module) =>
        (((Dense)module).weight.shape[0], ((Dense)module).weight.shape[1], true);
    public override Tensor Activations(TrackedLayer layer, Tensor input) =>
        torch.cat(new[] { input, torch.ones(input.shape[0], 1, dtype: input.dtype) }, 1).unsqueeze(1);
    public override Tensor OutputGradients(TrackedLayer layer, Tensor gradOutput) => gradOutput.unsqueeze(1);
    public override Tensor[] Parameters(nn.Module module) => new Tensor[] { ((Dense)module).weight, ((Dense)module).bias };
}

/// <summary>Layer types come from a registry: a type registered from another assembly makes its
/// modules tracked layers, and the methods then treat them as they treat nn.Linear.</summary>
[Collection("cli")]   // the registry is process-wide: not while the command-line tests list layers
public class LayerTypeRegistryTests
{
    [Fact]
    public void ARegisteredLayerTypeIsTrackedLikeLinear()
    {
        using var _ = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        var w = torch.randn(3, 4, dtype: ScalarType.Float64);
        var b = torch.randn(3, dtype: ScalarType.Float64);
        var linear = nn.Sequential(("fc", nn.Linear(4, 3))).to(ScalarType.Float64);
        using (no_grad()) { ((Linear)linear.named_children().Single().module).weight!.copy_(w); ((Linear)linear.named_children().Single().module).bias!.copy_(b); }
        var dense = nn.Sequential(("fc", new Dense(w, b)));
        var data = new TensorPairDataset(torch.randn(10, 4, dtype: ScalarType.Float64), torch.tensor(new long[] { 0, 1, 2, 0, 1, 2, 0, 1, 2, 0 }));

        var e = Assert.Throws<InfluenceSharpException>(() => TrackedLayer.Find(dense));
        Assert.Contains("no Linear or Conv2d or Embedding layer", e.Message);
        using (TrackedLayerTypes.Register(new DenseLayerType()))
        {
            var layer = Assert.Single(TrackedLayer.Find(dense));
            Assert.Equal("fc (Dense 3x5)", layer.ToString());
            var (mine, theirs) = (layer.Parameters(), Assert.Single(TrackedLayer.Find(linear)).Parameters());
            Assert.Equal(theirs.Length, mine.Length);
            for (int i = 0; i < mine.Length; i++) Assert.True(allclose(mine[i], theirs[i]));
            using var want = GradDot.Create(linear).PairwiseMatrix(data, data);
            using var got = GradDot.Create(dense).PairwiseMatrix(data, data);
            Assert.True(want.abs().max().item<float>() > 1e-3);      // not zeros
            Assert.True(allclose(got, want, rtol: 1e-5, atol: 1e-6));
        }
        Assert.Throws<InfluenceSharpException>(() => TrackedLayer.Find(dense));
    }
}
