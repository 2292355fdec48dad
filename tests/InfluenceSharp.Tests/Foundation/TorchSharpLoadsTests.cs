using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Foundation;

public class TorchSharpLoadsTests
{
    [Fact]
    public void LibtorchInitialisesAndComputesAGradient()
    {
        var x = torch.tensor(new double[] { 1.5, -2.0, 0.25 }, requires_grad: true);
        var y = (x * x * x).sum();          // d/dx x³ = 3x²
        y.backward();
        var g = x.grad!.data<double>().ToArray();
        Assert.Equal(new[] { 6.75, 12.0, 0.1875 }, g);
    }
}
