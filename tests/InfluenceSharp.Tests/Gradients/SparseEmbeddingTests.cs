using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Gradients;

/// <summary>
/// Embeddings of a vocabulary wider than <see cref="LayerBatch.DenseOneHotLimit"/> (5,000 tokens, as a
/// subword tokeniser's): their layer batches keep the token ids, the per-example gradient (g_t added
/// into column x_t, repeated tokens included) equals a float64 autograd loop, and TracIn, TRAK and
/// per-token scores run on them without ever forming the dense one-hot inputs — which would be
/// refused, as K-FAC/EK-FAC's V×V covariance is, naming the layer.
/// </summary>
public class SparseEmbeddingTests
{
    const int Vocab = 5000, Context = 6, N = 5;

    static (Gpt Model, TensorPairDataset Data) Problem(int seed)
    {
        torch.manual_seed(seed);
        var model = new Gpt(new GptOptions(Vocab, Context, Embedding: 4, Layers: 1, Heads: 2));
        model.to(ScalarType.Float64);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(torch.randn_like(p) * 0.3);
        var x = torch.randint(0, Vocab, new long[] { N, Context });
        x[.., 4] = x[.., 1];                                           // a token twice in every sequence
        x[2, 5] = x[0, 0];                                             // and one shared between sequences
        var y = torch.randint(0, Vocab, new long[] { N, Context });
        y[1, 5] = torch.tensor(-100L);
        return (model, new TensorPairDataset(x, y));
    }

    static TensorPairDataset Queries(TensorPairDataset data) => new(data.X.narrow(0, 0, 2), data.Y.narrow(0, 0, 2).flip(1));

    [Fact]
    public void PerExampleGradientAndNormsAreExactFromTheIds()
    {
        var (model, data) = Problem(2721);
        var layers = TrackedLayer.Find(model);
        var wte = layers[0];
        Assert.Equal(("wte", 4L, (long)Vocab), (wte.Name, wte.Out, wte.In));
        var expected = GptAttributionTests.OracleGradients(model, layers, data).narrow(1, 0, wte.NumParams);
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, N).ToArray();
        var y = data.Targets(idx);
        var task = new LanguageModelTask();
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => task.TrainLoss(l, y));
        var lb = lbs[0];
        Assert.True(lb.IsOneHot);
        Assert.Equal((long)Context, lb.Positions);
        var got = lb.PerExample().reshape(N, -1);
        Assert.True(Oracles.RelErr(got, expected) < 1e-12, $"relative error {Oracles.RelErr(got, expected)}");
        var norms = expected.square().sum(1);
        foreach (bool gram in new[] { true, false })
            Assert.True(Oracles.RelErr(lb.SquaredNorms(forceGram: gram), norms) < 1e-12, $"gram {gram}");
        // The dense inputs and the V×V covariance are refused, naming the layer and the way out.
        var e = Assert.Throws<InfluenceSharpException>(() => lb.A);
        Assert.Contains("'wte'", e.Message); Assert.Contains("--layers", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => lb.ACovariance());
        Assert.Contains("'wte'", e.Message); Assert.Contains("--layers", e.Message);
        Assert.Throws<InfluenceSharpException>(() => new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical }).Fit(data));
    }

    [Theory]
    [InlineData(TracInConvForm.Auto)]
    [InlineData(TracInConvForm.Factored)]
    public void TracInTrakAndPerTokenScoresRunOnTheIds(TracInConvForm form)
    {
        var (model, data) = Problem(2722);
        var queries = Queries(data);
        var task = new LanguageModelTask();
        var layers = TrackedLayer.Find(model);
        var gz = GptAttributionTests.OracleGradients(model, layers, data);
        var gq = GptAttributionTests.OracleGradients(model, layers, queries);
        var dot = gq.matmul(gz.mT);
        using (var tracin = new TracInCP(new[] { new TracInCheckpoint(model, 0.5) }, task, new TracInOptions { TrainBatchSize = 2, ConvForm = form }))
        {
            Assert.True(Oracles.RelErr(tracin.PairwiseMatrix(queries, data).to(ScalarType.Float64), 0.5 * dot) < 1e-6);
            var self = torch.tensor(tracin.SelfInfluence(data), dtype: ScalarType.Float64);
            Assert.True(Oracles.RelErr(self, 0.5 * gz.square().sum(1)) < 1e-10);
        }
        // TRAK, Kronecker projection: the embedding's activation side is the rows x_t of P_a.
        var proj = new ProjectionOptions { Layout = ProjectionLayout.Kronecker, GradientDim = 3, ActivationDim = 5, Seed = 29 };
        long p = layers.Sum(l => l.NumParams);
        var phiZ = GptTracInTrakTests.ProjectByHand(layers, -gz, proj, 0, unitEntries: true) / Math.Sqrt(p);
        using (var trak = new Trak(new[] { (nn.Module<Tensor, Tensor>)model }, new TrakOptions { TrainBatchSize = 2, Damping = 1e-3, Projection = proj }, task))
        {
            var f = trak.TrainFeatures(data)["features"];
            Assert.True(Oracles.RelErr(f, phiZ) < 1e-10, $"TRAK features relative error {Oracles.RelErr(f, phiZ)}");
        }
        // Per-token scores with the identity preconditioner add up to the gradient dot products.
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Identity }).Fit(data)!;
        var perToken = PerTokenScores.Compute(model, task, factors, queries, data, damping: 0, batchSize: 2);
        Assert.True(Oracles.RelErr(perToken.sum(new long[] { 2 }), dot) < 1e-10);
    }
}
