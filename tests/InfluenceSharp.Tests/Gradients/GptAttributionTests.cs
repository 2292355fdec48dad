using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Tests.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Gradients;

/// <summary>
/// Attribution on a tiny float64 transformer: per-example gradients of every tracked layer (token and
/// position embeddings, attention and MLP projections, the output head) equal an autograd loop over
/// examples of an explicitly written next-token loss (sum over scored tokens), and EK-FAC's
/// eigenvalues and scores equal an explicit EK-FAC built from those gradients.
/// </summary>
public class GptAttributionTests
{
    internal const int Vocab = 11, Context = 6, N = 7;

    internal static (Gpt Model, TensorPairDataset Data) Problem(int seed)
    {
        torch.manual_seed(seed);
        var model = new Gpt(new GptOptions(Vocab, Context, Embedding: 8, Layers: 2, Heads: 2));
        model.to(ScalarType.Float64);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(torch.randn_like(p) * 0.3);   // away from the tiny init
        var x = torch.randint(0, Vocab, new long[] { N, Context });
        var y = torch.randint(0, Vocab, new long[] { N, Context });
        // Unscored targets at the end of some sequences (padding) and at the start of one (a prompt).
        y[1, 4] = torch.tensor(-100L); y[1, 5] = torch.tensor(-100L); y[3, 0] = torch.tensor(-100L);
        return (model, new TensorPairDataset(x, y));
    }

    /// <summary>Σ over scored tokens of −log softmax(logits)[target], written out.</summary>
    internal static Tensor ExplicitLoss(Tensor logits, Tensor targets)
    {
        var logp = nn.functional.log_softmax(logits, -1);
        var mask = targets.ge(0);
        var safe = targets.where(mask, torch.zeros_like(targets));
        return logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1).where(mask, torch.zeros_like(logits.select(-1, 0))).sum().neg();
    }

    /// <summary>The layer's gradient in its [Out, In] layout: Linear [W | b], Embedding Wᵀ.</summary>
    internal static Tensor Flat(TrackedLayer l)
    {
        if (l.Module is Embedding e) return e.weight!.grad!.t().flatten().clone();
        var lin = (Linear)l.Module;
        var w = lin.weight!.grad!;
        return (lin.bias is null ? w : torch.cat(new[] { w, lin.bias.grad!.unsqueeze(1) }, 1)).flatten().clone();
    }

    internal static Tensor OracleGradients(Gpt model, IReadOnlyList<TrackedLayer> layers, TensorPairDataset data)
    {
        var rows = new List<Tensor>();
        for (int i = 0; i < data.Count; i++)
        {
            model.zero_grad();
            ExplicitLoss(model.forward(data.Inputs(new[] { i })), data.Targets(new[] { i })).backward();
            rows.Add(torch.cat(layers.Select(Flat).ToArray()));
        }
        return torch.stack(rows);
    }

    [Fact]
    public void PerExampleGradientsOfEveryLayerEqualAnAutogradLoop()
    {
        var (model, data) = Problem(2701);
        var layers = TrackedLayer.Find(model);
        Assert.Equal(new[] { "wte", "wpe", "h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj",
            "h.1.attn.c_attn", "h.1.attn.c_proj", "h.1.mlp.c_fc", "h.1.mlp.c_proj", "lm_head" }, layers.Select(l => l.Name));
        Assert.All(layers, l => Assert.True(l.SeveralPositions, l.Name));
        Assert.Equal((8L, 11L), (layers[0].Out, layers[0].In));
        var expected = OracleGradients(model, layers, data);
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, N).ToArray();
        var y = data.Targets(idx);
        var task = new LanguageModelTask();
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => task.TrainLoss(l, y));
        var got = torch.cat(lbs.Select(lb => lb.PerExample().reshape(N, -1)).ToArray(), 1);
        Oracles.AssertLayersClose(expected, got, layers, 1e-10);
        // The embedding's A side is exact: token counts on the diagonal.
        var a = lbs[0].ACovariance();
        var counts = torch.bincount(data.X.flatten(), minlength: Vocab).to(ScalarType.Float64);
        Assert.True(a.allclose(torch.diag(counts)));
    }

    [Fact]
    public void EkfacScoresEqualAnExplicitEkfacFromTheGradients()
    {
        var (model, data) = Problem(2702);
        var layers = TrackedLayer.Find(model);
        var task = new LanguageModelTask();
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = 3 }).Fit(data)!;
        var gz = OracleGradients(model, layers, data);
        var queries = new TensorPairDataset(data.X.narrow(0, 0, 3), data.Y.narrow(0, 0, 3).flip(1));
        var gq = OracleGradients(model, layers, queries);
        const double lambda = 1e-2;
        var scores = new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = lambda, TrainBatchSize = 4 }).PairwiseMatrix(queries, data);
        var expected = torch.zeros(3, N, dtype: ScalarType.Float64);
        long offset = 0;
        foreach (var (l, lf) in layers.Zip(factors.Layers))
        {
            var z = gz.narrow(1, offset, l.NumParams).reshape(-1, l.Out, l.In);
            var q = gq.narrow(1, offset, l.NumParams).reshape(-1, l.Out, l.In);
            offset += l.NumParams;
            var rz = lf.QS!.mT.matmul(z).matmul(lf.QA!);
            var rq = lf.QS!.mT.matmul(q).matmul(lf.QA!);
            // EK-FAC's eigenvalues are the second moments of the rotated per-example gradients.
            var lam = rz.square().mean(new long[] { 0 });
            Assert.True(lf.Lambda!.allclose(lam, rtol: 1e-8, atol: 1e-14), $"{l.Name}: eigenvalues");
            expected += (rq / (lam + lambda)).reshape(3, -1).matmul(rz.reshape(N, -1).mT);
        }
        double rel = ((scores.to(ScalarType.Float64) - expected).norm() / expected.norm()).item<double>();
        Assert.True(rel < 1e-5, $"scores: relative error {rel}");
    }

    [Fact]
    public void PerTokenScoresSumToTheSequenceScore()
    {
        var (model, data) = Problem(2703);
        var task = new LanguageModelTask();
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = 4 }).Fit(data)!;
        var queries = new TensorPairDataset(data.X.narrow(0, 2, 2), data.Y.narrow(0, 2, 2).roll(1, 1));
        const double lambda = 1e-2;
        var perToken = PerTokenScores.Compute(model, task, factors, queries, data, lambda, batchSize: 3);
        Assert.Equal(new long[] { 2, N, Context }, perToken.shape);
        var scores = new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = lambda }).PairwiseMatrix(queries, data).to(ScalarType.Float64);
        var summed = perToken.sum(new long[] { 2 });
        double rel = ((summed - scores).norm() / scores.norm()).item<double>();
        Assert.True(rel < 1e-5, $"per-token sums vs sequence scores: relative error {rel}");
        // Tokens differ, and the unscored end of sequence 1 (its last two targets) contributes nothing:
        // no later position's loss reaches it through the causal mask.
        Assert.True(perToken[0, 0].std().item<double>() > 1e-6);
        Assert.True(perToken[.., 1, 4..].abs().max().item<double>() < 1e-12);
        Assert.True(perToken[.., 1, 3].abs().max().item<double>() > 1e-9);
    }
}
