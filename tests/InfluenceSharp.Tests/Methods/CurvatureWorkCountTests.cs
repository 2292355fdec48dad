using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>The work counter the hvp-solvers bench reports: vectors × training examples per product.</summary>
public class CurvatureWorkCountTests
{
    [Fact]
    public void ExampleVectorProductsCountsVectorsTimesExamplesOfEveryProduct()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(11, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 11 }));
        var op = new CurvatureOperator(model, new ClassificationTask(), TrackedLayer.Find(model), train, HessianKind.GaussNewton, batchSize: 4);
        Assert.Equal(0, op.ExampleVectorProducts);
        op.Apply(torch.randn(3, op.NumParams, dtype: ScalarType.Float64));                 // 3 vectors, all 11 examples
        Assert.Equal(33, op.ExampleVectorProducts);
        op.Apply(torch.randn(2, op.NumParams, dtype: ScalarType.Float64), new[] { 1, 5, 7 });  // 2 vectors, 3 examples
        Assert.Equal(39, op.ExampleVectorProducts);
    }
}
