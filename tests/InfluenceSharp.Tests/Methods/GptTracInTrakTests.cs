using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Gradients;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>
/// The TracIn family and TRAK on a tiny float64 transformer with the language-model task: every
/// layer (embeddings included) runs at several tokens, so an example's gradient is Σ_t g_t a_tᵀ.
/// The oracle is a per-sequence autograd loop over the explicitly written next-token loss (summed
/// over scored tokens; the queries' scored tokens differ from the training sequences').
/// </summary>
public class GptTracInTrakTests
{
    const int N = GptAttributionTests.N;

    static TensorPairDataset Queries(TensorPairDataset data) =>
        new(data.X.narrow(0, 0, 3), data.Y.narrow(0, 0, 3).flip(1));

    /// <summary>Score matrices come back in float32 (the library's score dtype), so they are compared
    /// at 1e-6; features and self-influence stay float64 and are compared at 1e-10.</summary>
    static double Rel(Tensor got, Tensor expected) => Oracles.RelErr(got.to(ScalarType.Float64), expected);

    [Theory]
    [InlineData(TracInConvForm.Auto)]
    [InlineData(TracInConvForm.Explicit)]
    [InlineData(TracInConvForm.Factored)]
    public void TracInOverCheckpointsEqualsPerSequenceGradientDotProducts(TracInConvForm form)
    {
        var (m1, data) = GptAttributionTests.Problem(2711);
        var (m2, _) = GptAttributionTests.Problem(2712);
        var queries = Queries(data);
        var eta = new[] { 0.5, 0.25 };
        var models = new[] { m1, m2 };
        var expected = torch.zeros(3, N, dtype: ScalarType.Float64);
        var selfExpected = torch.zeros(N, dtype: ScalarType.Float64);
        for (int c = 0; c < 2; c++)
        {
            var layers = TrackedLayer.Find(models[c]);
            var gz = GptAttributionTests.OracleGradients(models[c], layers, data);
            var gq = GptAttributionTests.OracleGradients(models[c], layers, queries);
            expected += eta[c] * gq.matmul(gz.mT);
            selfExpected += eta[c] * gz.square().sum(1);
        }
        var cps = models.Select((m, c) => new TracInCheckpoint(m, eta[c])).ToList();
        using var tracin = new TracInCP(cps, new LanguageModelTask(), new TracInOptions { TrainBatchSize = 3, QueryBatchSize = 2, ConvForm = form });
        var scores = tracin.PairwiseMatrix(queries, data);
        Assert.True(expected.abs().max().item<double>() > 1e-3);
        Assert.True(Rel(scores, expected) < 1e-6, $"{form}: scores relative error {Rel(scores, expected)}");
        var self = torch.tensor(tracin.SelfInfluence(data), dtype: ScalarType.Float64);
        Assert.True(Rel(self, selfExpected) < 1e-10, $"{form}: self-influence relative error {Rel(self, selfExpected)}");
    }

    [Fact]
    public void GradDotGradCosAndTracInLastFollowTheGradientsAtOneModel()
    {
        var (model, data) = GptAttributionTests.Problem(2713);
        var queries = Queries(data);
        var task = new LanguageModelTask();
        var layers = TrackedLayer.Find(model);
        var gz = GptAttributionTests.OracleGradients(model, layers, data);
        var gq = GptAttributionTests.OracleGradients(model, layers, queries);
        var dot = gq.matmul(gz.mT);
        using (var gd = GradDot.Create(model, task, new TracInOptions { TrainBatchSize = 4 }))
            Assert.True(Rel(gd.PairwiseMatrix(queries, data), dot) < 1e-6);
        using (var gc = GradCos.Create(model, task, new TracInOptions { TrainBatchSize = 4 }))
        {
            var cos = dot / torch.outer(gq.norm(1), gz.norm(1));
            Assert.True(Rel(gc.PairwiseMatrix(queries, data), cos) < 1e-6);
        }
        // tracin-last: the output head alone (the last columns of the rows), at two checkpoints' worth
        // of one model with η = 0.3.
        var head = layers[^1];
        Assert.Equal("lm_head", head.Name);
        long p = head.NumParams;
        var lastDot = 0.3 * gq.narrow(1, gq.shape[1] - p, p).matmul(gz.narrow(1, gz.shape[1] - p, p).mT);
        using var last = TracInCP.LastLayer(new[] { new TracInCheckpoint(model, 0.3) }, task, new TracInOptions { TrainBatchSize = 5 });
        Assert.Equal("tracin-last", last.Name);
        Assert.Equal(new[] { "lm_head" }, last.Layers.Select(l => l.Name));
        Assert.True(Rel(last.PairwiseMatrix(queries, data), lastDot) < 1e-6);
    }

    /// <summary>The Kronecker projection of a layer's [Out, In] gradients G [n, Out, In] written out:
    /// vec(P_gᵀ G P_a) with the projector's seeded matrices (entries ±1, scaled by 1/√k unless unit).</summary>
    internal static Tensor KroneckerByHand(TrackedLayer l, Tensor g, ProjectionOptions o, ulong stream, bool unitEntries)
    {
        Tensor Factor(long size, int want, string tag)
        {
            if (want >= size) return torch.eye(size, dtype: ScalarType.Float64);
            ulong key = CounterRandom.Key(o.Seed, CounterRandom.Mix(stream) ^ CounterRandom.Hash(l.Name + "#" + tag));
            var m = torch.tensor(ProjectionMatrix.Full(o.Kind, key, (int)size, want), new long[] { size, want }).to(ScalarType.Float64);
            return unitEntries ? m : m / Math.Sqrt(want);
        }
        var pg = Factor(l.Out, o.GradientDim, "g");
        var pa = Factor(l.In, o.ActivationDim, "a");
        return pg.mT.matmul(g).matmul(pa).reshape(g.shape[0], -1);
    }

    internal static Tensor ProjectByHand(IReadOnlyList<TrackedLayer> layers, Tensor rows, ProjectionOptions o, ulong stream, bool unitEntries)
    {
        var parts = new List<Tensor>();
        long offset = 0;
        foreach (var l in layers)
        {
            parts.Add(KroneckerByHand(l, rows.narrow(1, offset, l.NumParams).reshape(-1, l.Out, l.In), o, stream, unitEntries));
            offset += l.NumParams;
        }
        return torch.cat(parts, 1);
    }

    [Fact]
    public void TracInProjIsTheKroneckerProjectionOfTheSequenceGradients()
    {
        var (model, data) = GptAttributionTests.Problem(2714);
        var queries = Queries(data);
        var layers = TrackedLayer.Find(model);
        var proj = new ProjectionOptions { Layout = ProjectionLayout.Kronecker, GradientDim = 4, ActivationDim = 5, Seed = 17 };
        var eta = 0.7;
        var z = ProjectByHand(layers, GptAttributionTests.OracleGradients(model, layers, data), proj, 0, unitEntries: false);
        var q = ProjectByHand(layers, GptAttributionTests.OracleGradients(model, layers, queries), proj, 0, unitEntries: false);
        var expected = eta * q.matmul(z.mT);
        using var tp = new TracInCPFastRandProj(new[] { new TracInCheckpoint(model, eta) }, new LanguageModelTask(),
            new TracInRandProjOptions { TrainBatchSize = 3, Projection = proj });
        Assert.Equal(layers.Count * 20L, tp.Dim);
        Assert.True(Rel(tp.PairwiseMatrix(queries, data), expected) < 1e-6);
    }

    [Theory]
    [InlineData(ProjectionLayout.Kronecker)]
    [InlineData(ProjectionLayout.Dense)]
    public void TrakProjectsTheSummedLogProbabilityGradientWithWeightOne(ProjectionLayout layout)
    {
        var (model, data) = GptAttributionTests.Problem(2715);
        var queries = Queries(data);
        var layers = TrackedLayer.Find(model);
        long p = layers.Sum(l => l.NumParams);
        var proj = new ProjectionOptions { Layout = layout, GradientDim = 4, ActivationDim = 5, Dim = 40, Seed = 23 };
        // f = Σ_t log p(y_t): its gradient is minus the loss gradient of the oracle.
        var gz = -GptAttributionTests.OracleGradients(model, layers, data);
        var gq = -GptAttributionTests.OracleGradients(model, layers, queries);
        Tensor Phi(Tensor g)
        {
            if (layout == ProjectionLayout.Kronecker) return ProjectByHand(layers, g, proj, 0, unitEntries: true) / Math.Sqrt(p);
            ulong key = CounterRandom.Key(proj.Seed, CounterRandom.Mix(0) ^ CounterRandom.Hash("dense"));
            var pm = torch.tensor(ProjectionMatrix.Full(proj.Kind, key, (int)p, proj.Dim), new long[] { p, proj.Dim }).to(ScalarType.Float64);
            return g.matmul(pm) / Math.Sqrt(p);
        }
        var phiZ = Phi(gz); var phiQ = Phi(gq);
        const double lambda = 1e-3;
        var kernel = phiZ.mT.matmul(phiZ) + lambda * torch.eye(phiZ.shape[1], dtype: ScalarType.Float64);
        var expected = phiQ.matmul(torch.linalg.inv(kernel)).matmul(phiZ.mT);       // Q = 1 for every sequence
        using var trak = new Trak(new[] { (nn.Module<Tensor, Tensor>)model }, new TrakOptions { TrainBatchSize = 3, Damping = lambda, Projection = proj }, new LanguageModelTask());
        var f = trak.TrainFeatures(data);
        Assert.True(f["q"].eq(1).all().item<bool>());
        Assert.True(Rel(f["features"], phiZ) < 1e-10, $"features relative error {Rel(f["features"], phiZ)}");
        var scores = trak.PairwiseMatrix(queries, data);
        Assert.True(Rel(scores, expected) < 1e-6, $"scores relative error {Rel(scores, expected)}");
        Assert.Equal("LanguageModelTask", TrakFeaturizer.OutputKey(new LanguageModelTask()));
    }
}
