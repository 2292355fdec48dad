using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Audit;

/// <summary>Library paths that had no test: bfloat16 scoring, ResNet-9 (BatchNorm) in influence
/// functions and TracIn, and the true Fisher's sampled labels.</summary>
public class MethodPathTests
{
    [Fact]
    public void BFloat16ScoresTrackFloat32Scores()
    {
        torch.manual_seed(TestSeed.For());
        var model = new TwoLayerMlp(20, 16, 5);
        var train = new TensorPairDataset(torch.randn(120, 20), torch.randint(0, 5, new long[] { 120 }));
        var queries = new TensorPairDataset(torch.randn(6, 20), torch.randint(0, 5, new long[] { 6 }));
        var task = new ClassificationTask();
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 40 }).Fit(train)!;
        foreach (int rank in new[] { 0, 2 })
        {
            var fp32 = new InfluenceFunction(model, task, factors, new ScoreOptions { QueryRank = rank }).PairwiseMatrix(queries, train);
            var bf16 = new InfluenceFunction(model, task, factors, new ScoreOptions { QueryRank = rank, BFloat16 = true }).PairwiseMatrix(queries, train);
            Assert.Equal(ScalarType.Float32, bf16.dtype);
            double rho = Oracles.Spearman(Oracles.Flat(fp32), Oracles.Flat(bf16));
            double rel = ((bf16 - fp32).norm() / fp32.norm()).item<float>();
            Assert.True(rho > 0.99, $"rank {rank}: Spearman bf16 vs fp32 {rho} ({TestSeed.Describe()})");
            Assert.True(rel < 0.03, $"rank {rank}: relative error {rel} ({TestSeed.Describe()})");
            // bf16 has an 8-bit mantissa: the products really ran in it (not silently in fp32).
            Assert.True(rel > 1e-5, $"rank {rank}: bf16 scores equal fp32 scores to {rel}: --bf16 had no effect");
        }
    }

    /// <summary>ResNet-9 with BatchNorm (eval mode: per-example gradients are well defined) on tiny
    /// 12×12 images, in float32 (libtorch has no fast float64 conv on CPU), tracking one conv layer and the classifier: identity and diagonal IF and TracIn
    /// equal the explicit formulas on per-example gradients; pairwise diagonals equal self-influence.</summary>
    [Fact]
    public void ResNet9WithBatchNormInInfluenceFunctionsAndTracIn()
    {
        torch.manual_seed(TestSeed.For());
        var model = ResNet9.Create(3, 4);
        // Non-trivial BatchNorm statistics: a few training-mode forwards update the running mean/var.
        model.train();
        using (no_grad()) for (int i = 0; i < 2; i++) model.forward(torch.randn(4, 3, 12, 12) * 2 + 0.5);
        model.eval();
        int n = 4;
        var train = new TensorPairDataset(torch.randn(n, 3, 12, 12), torch.randint(0, 4, new long[] { n }));
        var queries = new TensorPairDataset(torch.randn(2, 3, 12, 12), torch.randint(0, 4, new long[] { 2 }));
        const string layersFilter = "6.0,9";
        var layers = TrackedLayer.Find(model, layersFilter);
        Assert.Equal(new[] { "6.0", "9" }, layers.Select(l => l.Name).Order());
        var task = new ClassificationTask();
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
        var dots = gq.matmul(gz.mT);

        var fit = (FactorStrategy s) => new FactorFitter(model, task, new FactorOptions { Strategy = s, Layers = layersFilter, Fisher = FisherType.Empirical, TrainBatchSize = 4 }).Fit(train)!;
        using (var id = fit(FactorStrategy.Identity))
        {
            var scores = new InfluenceFunction(model, task, id, new ScoreOptions { TrainBatchSize = 4 }).PairwiseMatrix(queries, train);
            double rel = ((scores - dots).norm() / dots.norm()).item<float>();
            Assert.True(rel < 1e-4, $"identity IF vs explicit gradient dot products: relative error {rel}");
        }
        // Diagonal IF (E[G⊙G] of these per-example gradients): scores, self-influence and the pairwise
        // diagonal against the explicit formula. (EK-FAC here would eigendecompose conv 6.0's
        // 2304×2304 A; EK-FAC on conv layers is checked in ConvFactorTests and KfacConvTests.)
        using (var diag = fit(FactorStrategy.Diagonal))
        {
            double lam = 1e-3 * gz.square().mean().item<float>();
            var d = gz.square().mean(new long[] { 0 }) + lam;
            var f = new InfluenceFunction(model, task, diag, new ScoreOptions { TrainBatchSize = 4, Damping = lam });
            var expectedDiag = (gq / d).matmul(gz.mT);
            double relD = ((f.PairwiseMatrix(queries, train) - expectedDiag).norm() / expectedDiag.norm()).item<float>();
            Assert.True(relD < 1e-4, $"diagonal IF on ResNet-9 vs explicit: relative error {relD}");
            var self = f.SelfInfluence(train);
            Assert.Equal(Oracles.Flat((gz.square() / d).sum(1)), self, new ToleranceComparer(1e-4));
            Assert.Equal(Oracles.Flat(f.PairwiseMatrix(train, train).diagonal()), self, new ToleranceComparer(1e-4));
        }

        // TracIn over two checkpoints (the model and a perturbed copy), η = 0.5 and 0.25.
        var copy = ResNet9.Create(3, 4);
        copy.load_state_dict(model.state_dict());
        using (no_grad()) foreach (var p in copy.parameters()) p.add_(torch.randn_like(p) * 0.05);
        copy.eval();
        var gz2 = Oracles.PerExampleGradients(copy, TrackedLayer.Find(copy, layersFilter), train, task.TrainLoss);
        var gq2 = Oracles.PerExampleGradients(copy, TrackedLayer.Find(copy, layersFilter), queries, task.TrainLoss);
        var expected = 0.5 * gq.matmul(gz.mT) + 0.25 * gq2.matmul(gz2.mT);
        using var tracin = new TracInCP(new[] { new TracInCheckpoint(model, 0.5), new TracInCheckpoint(copy, 0.25) }, task,
            new TracInOptions { Layers = layersFilter, TrainBatchSize = 4 });
        var t = tracin.PairwiseMatrix(queries, train);
        double relT = ((t - expected).norm() / expected.norm()).item<float>();
        Assert.True(relT < 1e-4, $"TracIn on ResNet-9 vs explicit: relative error {relT}");
        var selfExpected = 0.5 * gz.square().sum(1) + 0.25 * gz2.square().sum(1);
        Assert.Equal(Oracles.Flat(selfExpected), tracin.SelfInfluence(train), new ToleranceComparer(1e-4));
    }

    /// <summary>The true Fisher samples labels from the model's softmax: the output gradient
    /// g = softmax − onehot(ŷ) then has covariance E[g gᵀ] = diag(p) − p pᵀ. Fitting K-FAC on a
    /// single Linear layer with many samples, its S factor approaches the mean of diag(p) − p pᵀ over
    /// the inputs (the expected Fisher, computed explicitly), and not the empirical Fisher.</summary>
    [Fact]
    public void TrueFisherSamplesLabelsFromThePredictiveDistribution()
    {
        torch.manual_seed(TestSeed.For());
        var model = nn.Sequential(("fc", nn.Linear(4, 3))).to(ScalarType.Float64);
        int distinct = 5, repeats = 3000;
        var x = torch.randn(distinct, 4, dtype: ScalarType.Float64) * 1.5;
        var y = torch.tensor(new long[] { 0, 1, 2, 0, 1 });
        var data = new TensorPairDataset(x.repeat(repeats, 1), y.repeat(repeats));
        var task = new ClassificationTask();
        Tensor SFactor(FisherType f)
        {
            using var fac = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Kfac, Fisher = f, TrainBatchSize = 1000, Seed = 3 }).Fit(data)!;
            var l = fac.Layers[0];
            return l.QS!.matmul(torch.diag(l.EigS!)).matmul(l.QS!.mT);
        }
        Tensor p;
        using (no_grad()) p = nn.functional.softmax(model.forward(x), 1);
        var expectedFisher = torch.zeros(3, 3, dtype: ScalarType.Float64);
        var empirical = torch.zeros(3, 3, dtype: ScalarType.Float64);
        for (int i = 0; i < distinct; i++)
        {
            expectedFisher += torch.diag(p[i]) - torch.outer(p[i], p[i]);
            var g = p[i] - nn.functional.one_hot(y[i], 3).to(ScalarType.Float64);
            empirical += torch.outer(g, g);
        }
        expectedFisher /= distinct; empirical /= distinct;
        var sTrue = SFactor(FisherType.True);
        double err = (sTrue - expectedFisher).abs().max().item<double>();
        double scale = expectedFisher.abs().max().item<double>();
        // 15,000 samples: the Monte-Carlo error of each entry is about 0.004·scale.
        Assert.True(err < 0.06 * scale, $"true-Fisher S differs from diag(p) - p pᵀ by {err} (scale {scale}; {TestSeed.Describe()})");
        Assert.True((empirical - expectedFisher).abs().max().item<double>() > 0.3 * scale, "the test cannot tell the true from the empirical Fisher");
        Assert.True((SFactor(FisherType.Empirical) - empirical).abs().max().item<double>() < 1e-10 * scale + 1e-12);
    }
}
