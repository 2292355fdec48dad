using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Features;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Methods;
using InfluenceSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Models;

public class ResNet18Tests
{
    /// <summary>torchvision's resnet18 parameter names, in module order.</summary>
    internal static List<string> TorchvisionParameterNames()
    {
        var names = new List<string> { "conv1.weight", "bn1.weight", "bn1.bias" };
        for (int l = 1; l <= 4; l++)
            for (int b = 0; b < 2; b++)
            {
                string p = $"layer{l}.{b}.";
                names.AddRange(new[] { p + "conv1.weight", p + "bn1.weight", p + "bn1.bias", p + "conv2.weight", p + "bn2.weight", p + "bn2.bias" });
                if (l > 1 && b == 0) names.AddRange(new[] { p + "downsample.0.weight", p + "downsample.1.weight", p + "downsample.1.bias" });
            }
        names.AddRange(new[] { "fc.weight", "fc.bias" });
        return names;
    }

    [Fact]
    public void HasTorchvisionsParameterNamesAndCount()
    {
        using var scope = NewDisposeScope();
        using var model = new ResNet18(3, 1000);
        var named = model.named_parameters().ToList();
        Assert.Equal(TorchvisionParameterNames(), named.Select(p => p.name));
        // torchvision.models.resnet18() has 11,689,512 parameters.
        Assert.Equal(11_689_512L, named.Sum(p => p.parameter.numel()));
        var bnBuffers = model.state_dict().Keys.Where(k => k.EndsWith("running_mean", StringComparison.Ordinal)).ToList();
        Assert.Equal(20, bnBuffers.Count);
        Assert.Contains("layer3.0.downsample.1.running_var", model.state_dict().Keys);
    }

    /// <summary>torchvision's feature-map sizes on a 224×224 image: 56×56 after the stem (7×7/2 conv
    /// padded 3, 3×3/2 max-pool padded 1), then 56, 28, 14, 7.</summary>
    [Fact]
    public void FeatureMapSizesAreTorchvisions()
    {
        using var scope = NewDisposeScope();
        var model = new ResNet18(3, 10);
        model.eval();
        var sizes = new Dictionary<string, long[]>();
        var modules = model.named_modules().ToDictionary(m => m.name, m => m.module);
        var hooks = new[] { "layer1", "layer2", "layer3", "layer4" }.Select(n =>
            ((nn.Module<Tensor, Tensor>)modules[n]).register_forward_hook((_, _, o) => { sizes[n] = o.shape; return o; })).ToList();
        using (no_grad()) model.forward(torch.randn(1, 3, 224, 224));
        foreach (var h in hooks) h.remove();
        Assert.Equal(new long[] { 1, 64, 56, 56 }, sizes["layer1"]);
        Assert.Equal(new long[] { 1, 128, 28, 28 }, sizes["layer2"]);
        Assert.Equal(new long[] { 1, 256, 14, 14 }, sizes["layer3"]);
        Assert.Equal(new long[] { 1, 512, 7, 7 }, sizes["layer4"]);
    }

    [Theory]
    [InlineData(1, 32, 32, 3)]
    [InlineData(3, 40, 37, 7)]
    public void TakesAnyClassCountChannelsAndSizeFrom32(int channels, int h, int w, int classes)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        var spec = ModelSpec.For("resnet18", channels, h, w, classes);
        var model = spec.Create();
        model.eval();
        using var _ = no_grad();
        var y = model.forward(torch.randn(2, channels, h, w));
        Assert.Equal(new long[] { 2, classes }, y.shape);
        Assert.True(y.isfinite().all().item<bool>());
        var e = Assert.Throws<InfluenceSharpException>(() => ModelSpec.For("resnet18", channels, 28, 28, classes));
        Assert.Contains("at least 32x32", e.Message);
    }

    /// <summary>A float64 ResNet-18 in eval mode with BatchNorm statistics and affine parameters that
    /// are not the identity (so that a wrong BatchNorm treatment shows).</summary>
    internal static ResNet18 RandomEvalModel(int channels, int classes, int seed)
    {
        torch.manual_seed(seed);
        var model = new ResNet18(channels, classes);
        model.to(ScalarType.Float64);
        Oracles.RandomiseBatchNorm(model);
        model.eval();
        return model;
    }

    static TensorPairDataset Data(int n, int channels, int classes, int size = 32) =>
        new(torch.randn(n, channels, size, size, dtype: ScalarType.Float64), torch.randint(0, classes, new long[] { n }));

    /// <summary>Batched per-example gradients (one forward, one autograd.grad) equal a per-example
    /// backward loop, layer by layer: BatchNorm in eval mode, residual additions, strided 1×1
    /// shortcuts, the stem's 7×7/2 convolution and the head.</summary>
    static void AssertBatchedEqualsLoop(nn.Module<Tensor, Tensor> model, IReadOnlyList<TrackedLayer> layers, TensorPairDataset data)
    {
        var task = new ClassificationTask();
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, data.Count).ToArray();
        var y = data.Targets(idx);
        var (_, lbs) = capture.Run(model, data.Inputs(idx), logits => task.TrainLoss(logits, y));
        var oracle = Oracles.PerExampleGradients(model, layers, data, task.TrainLoss);
        long offset = 0;
        foreach (var (layer, lb) in layers.Zip(lbs))
        {
            var batched = lb.PerExample().reshape(data.Count, -1);
            var expected = oracle.narrow(1, offset, layer.NumParams);
            offset += layer.NumParams;
            Assert.True(expected.abs().sum().item<double>() > 0, layer.Name);
            double err = ((batched - expected).norm() / expected.norm()).item<double>();
            Assert.True(err < 1e-10, $"{layer.Name}: relative error {err}");
        }
        Assert.Equal(oracle.shape[1], offset);
    }

    [Fact]
    public void PerExampleGradientsEqualTheAutogradLoop()
    {
        using var scope = NewDisposeScope();
        var model = RandomEvalModel(3, 3, TestSeed.For());
        var data = Data(3, 3, 3);
        var layers = TrackedLayer.Find(model);
        Assert.Equal(21, layers.Count);      // 20 convolutions + fc
        Assert.Contains(layers, l => l.Name == "layer2.0.downsample.0");
        AssertBatchedEqualsLoop(model, layers, data);
    }

    [Fact]
    public void FrozenLayersAreNotTrackedAndTheTrainableOnesStillMatch()
    {
        using var scope = NewDisposeScope();
        var model = RandomEvalModel(1, 4, TestSeed.For());
        var frozen = InitWeights.Freeze(model, new[] { "conv1", "bn1", "layer1", "layer2", "layer3" });
        Assert.Contains("layer3.1.bn2.bias", frozen);
        Assert.DoesNotContain("layer4.0.conv1.weight", frozen);
        var layers = TrackedLayer.Find(model);
        Assert.Equal("layer4.0.conv1,layer4.0.conv2,layer4.0.downsample.0,layer4.1.conv1,layer4.1.conv2,fc", string.Join(",", layers.Select(l => l.Name)));
        AssertBatchedEqualsLoop(model, layers, Data(2, 1, 4));
        // --layers narrows within the trainable layers; a filter matching only frozen layers says so.
        Assert.Equal(new[] { "layer4.1.conv1", "layer4.1.conv2" }, TrackedLayer.Find(model, "layer4.1").Select(l => l.Name));
        var e = Assert.Throws<InfluenceSharpException>(() => TrackedLayer.Find(model, "layer1"));
        Assert.Contains("trainable", e.Message);
        var unknown = Assert.Throws<InfluenceSharpException>(() => InitWeights.Freeze(model, new[] { "layer9" }));
        Assert.Contains("--freeze layer9", unknown.Message);
    }

    /// <summary>EK-FAC on ResNet-18 layers of every kind (a 3×3 conv inside a residual block, a strided
    /// 1×1 shortcut, the head): its eigenvalues are the second moments of the per-example gradients
    /// (from the autograd loop) in the fitted eigenbases.</summary>
    [Fact]
    public void EkfacEigenvaluesEqualSecondMomentsOfTheLoopGradients()
    {
        using var scope = NewDisposeScope();
        var model = RandomEvalModel(3, 3, TestSeed.For());
        var train = Data(4, 3, 3);
        var task = new ClassificationTask();
        const string filter = "layer1.0.conv2,layer2.0.downsample.0,fc";
        var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = 3, Layers = filter }).Fit(train)!;
        var layers = TrackedLayer.Find(model, filter);
        Assert.Equal(3, layers.Count);
        Oracles.AssertEkfacLambdas(model, layers, factors, train, task.TrainLoss, rtol: 1e-7);
        // Scores run end to end and self-influence is positive.
        var f = new InfluenceFunction(model, task, factors, new ScoreOptions { TrainBatchSize = 3 });
        Assert.All(f.SelfInfluence(train), s => Assert.True(s > 0));
    }

    /// <summary>TracIn on a ResNet-18 with a frozen backbone: Σ_c η_c ∇L_q·∇L_z over the trainable layers.</summary>
    [Fact]
    public void TracInOnAFrozenBackboneIsTheStepWeightedGradientDotProduct()
    {
        using var scope = NewDisposeScope();
        var rng = TestSeed.Random();
        var cps = Enumerable.Range(0, 2).Select(c =>
        {
            var m = RandomEvalModel(3, 3, TestSeed.For() + c);
            InitWeights.Freeze(m, new[] { "conv1", "bn1", "layer1", "layer2", "layer3", "layer4.0" });
            return new TracInCheckpoint(m, 0.1 + rng.NextDouble());
        }).ToList();
        var train = Data(4, 3, 3); var queries = Data(2, 3, 3);
        var task = new ClassificationTask();
        using var tracin = new TracInCP(cps, task, new TracInOptions { TrainBatchSize = 3, BlockSize = 3 });
        Assert.Equal(new[] { "layer4.1.conv1", "layer4.1.conv2", "fc" }, tracin.Layers.Select(l => l.Name));
        Tensor expected = torch.zeros(2, 4, dtype: ScalarType.Float64);
        foreach (var cp in cps)
        {
            var layers = TrackedLayer.Find(cp.Model);
            var gq = Oracles.PerExampleGradients(cp.Model, layers, queries, task.QueryMeasure);
            var gz = Oracles.PerExampleGradients(cp.Model, layers, train, task.TrainLoss);
            expected += cp.StepSize * gq.matmul(gz.mT);
        }
        var scores = tracin.PairwiseMatrix(queries, train).to(ScalarType.Float64);
        double err = ((scores - expected).norm() / expected.norm()).item<double>();
        Assert.True(err < 1e-5, $"relative error {err}");
    }

    /// <summary>TRAK on a ResNet-18 whose backbone is frozen (only fc tracked), identity projection:
    /// φ = ∂margin/∂logits ⊗ [features, 1] / √p with the eval-mode BatchNorm features, against the
    /// closed form φ_q (ΦᵀΦ + λI)⁻¹ φ_zᵀ · Q_z.</summary>
    [Fact]
    public void TrakOnAFrozenBackboneIsTheClosedForm()
    {
        using var scope = NewDisposeScope();
        const int classes = 3;
        var model = RandomEvalModel(3, classes, TestSeed.For());
        InitWeights.Freeze(model, new[] { "conv1", "bn1", "layer1", "layer2", "layer3", "layer4" });
        var train = Data(6, 3, classes); var queries = Data(2, 3, classes);
        double lambda = 0.05;
        using var trak = new Trak(new[] { model }, new TrakOptions
        {
            TrainBatchSize = 4, BlockSize = 5, Damping = lambda,
            Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Identity },
        });
        (Tensor Phi, Tensor Q) ByHand(TensorPairDataset d)
        {
            using var _ = no_grad();
            var feats = model.Features(d.X);
            var logits = model.forward(d.X);
            var onehot = nn.functional.one_hot(d.Y, classes).to(ScalarType.Float64);
            var others = nn.functional.softmax(logits.masked_fill(onehot.to(ScalarType.Bool), double.NegativeInfinity), 1);
            var a = torch.cat(new[] { feats, torch.ones(d.Count, 1, dtype: ScalarType.Float64) }, 1);
            var phi = ((onehot - others).unsqueeze(2) * a.unsqueeze(1)).reshape(d.Count, -1) / Math.Sqrt(classes * 513);
            var q = 1 - nn.functional.softmax(logits, 1).gather(1, d.Y.unsqueeze(1)).squeeze(1);
            return (phi, q);
        }
        var (phi, q) = ByHand(train);
        var (phiQ, _) = ByHand(queries);
        var kinv = torch.linalg.inv(phi.mT.matmul(phi) + lambda * torch.eye(phi.shape[1], dtype: ScalarType.Float64));
        var expected = phiQ.matmul(kinv).matmul(phi.mT) * q.unsqueeze(0);
        var scores = trak.PairwiseMatrix(queries, train).to(ScalarType.Float64);
        double err = ((scores - expected).norm() / expected.norm()).item<double>();
        Assert.True(err < 1e-4, $"relative error {err}");
    }
}

public class ResNet9GradientTests
{
    /// <summary>ResNet-9 (nested Sequentials, residual wrappers, BatchNorm in eval mode, max-pools, a
    /// bias-free head): batched per-example gradients equal the float64 autograd loop; frozen layers
    /// are left out.</summary>
    [Fact]
    public void PerExampleGradientsEqualTheAutogradLoopInEvalMode()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        var model = ResNet9.Create(3, 4);
        model.to(ScalarType.Float64);
        Oracles.RandomiseBatchNorm(model);
        model.eval();
        InitWeights.Freeze(model, new[] { "0", "1", "2" });
        var layers = TrackedLayer.Find(model);
        Assert.Equal(new[] { "3.0", "5.module.0.0", "5.module.1.0", "6.0", "9" }, layers.Select(l => l.Name));
        var data = new TensorPairDataset(torch.randn(2, 3, 16, 16, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { 2 }));
        var task = new ClassificationTask();
        using var capture = new GradientCapture(model, layers);
        var y = data.Targets(new[] { 0, 1 });
        var (_, lbs) = capture.Run(model, data.Inputs(new[] { 0, 1 }), logits => task.TrainLoss(logits, y));
        var batched = torch.cat(lbs.Select(lb => lb.PerExample().reshape(2, -1)).ToArray(), 1);
        var oracle = Oracles.PerExampleGradients(model, layers, data, task.TrainLoss);
        double err = ((batched - oracle).norm() / oracle.norm()).item<double>();
        Assert.True(err < 1e-10, $"relative error {err}");
    }
}
