using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Training;

public class ModelTests
{
    /// <summary>SmallCnn is written for speed (channels-last, ReLU after pooling); it must compute the
    /// textbook conv → relu → pool composition, values and gradients.</summary>
    [Fact]
    public void SmallCnnComputesTheTextbookComposition()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        var model = (SmallCnn)ModelSpec.For("smallcnn", 1, 28, 28, 10).Create();
        model.to(ScalarType.Float64);
        var p = model.named_parameters().ToDictionary(t => t.name, t => t.parameter);
        var x = torch.randn(new long[] { 5, 1, 28, 28 }, dtype: ScalarType.Float64);
        Tensor Textbook()
        {
            var h = functional.max_pool2d(functional.relu(functional.conv2d(x, p["conv1.weight"], p["conv1.bias"], padding: new long[] { 1, 1 })), 2);
            h = functional.max_pool2d(functional.relu(functional.conv2d(h, p["conv2.weight"], p["conv2.bias"], padding: new long[] { 1, 1 })), 2);
            h = functional.relu(functional.linear(h.flatten(1), p["fc1.weight"], p["fc1.bias"]));
            return functional.linear(h, p["fc2.weight"], p["fc2.bias"]);
        }
        var weights = torch.randn(5, 10, dtype: ScalarType.Float64);
        var ours = model.forward(x);
        var gOurs = torch.autograd.grad(new[] { (ours * weights).sum() }, p.Values.ToArray());
        var expected = Textbook();
        var gExpected = torch.autograd.grad(new[] { (expected * weights).sum() }, p.Values.ToArray());
        Assert.True(ours.allclose(expected, rtol: 1e-12, atol: 1e-12));
        for (int i = 0; i < gOurs.Count; i++)
            Assert.True(gOurs[i].allclose(gExpected[i], rtol: 1e-10, atol: 1e-12), p.Keys.ElementAt(i));
    }
}
