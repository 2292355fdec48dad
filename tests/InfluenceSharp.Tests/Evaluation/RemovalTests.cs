using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

public class RemovalTests
{
    [Fact]
    public void RemovalSetsOfAHandCheckableCase()
    {
        using var scores = torch.tensor(new float[] { 1, -2, 3, 0, 0.5f, -1, 2, -1, -3, 0, 0.5f, 1 }, new long[] { 2, 6 });
        var summed = Removal.SummedScores(scores);
        Assert.Equal(new double[] { 3, -3, 0, 0, 1, 0 }, summed);
        Assert.Equal(new[] { 0, 4, 2 }, Removal.Set(RemovalKind.Helpful, summed, 3)); // 3, 1, then the first of the zeros
        Assert.Equal(new[] { 1, 2, 3 }, Removal.Set(RemovalKind.Harmful, summed, 3)); // -3, then zeros by index
        Assert.Empty(Removal.Set(RemovalKind.Helpful, summed, 0));
        var r1 = Removal.Set(RemovalKind.Random, summed, 3, seed: 9);
        Assert.Equal(r1, Removal.Set(RemovalKind.Random, summed, 3, seed: 9));
        Assert.Equal(3, r1.Distinct().Count());
        Assert.All(r1, i => Assert.InRange(i, 0, 5));
        var draws = Enumerable.Range(0, 10).Select(s => string.Join(",", Removal.Set(RemovalKind.Random, summed, 3, s).Order())).Distinct();
        Assert.True(draws.Count() > 1, "random removal sets do not depend on the seed");
        Assert.Throws<InfluenceSharpException>(() => Removal.Set(RemovalKind.Helpful, summed, 6));
    }

    /// <summary>GradDot of the logistic regression (its full gradient): (g_q·g_z)(a_q·a_z) with
    /// g = softmax − onehot and a = [x, 1]. Positive = a step on z lowers the query's loss.</summary>
    static Tensor GradDot(nn.Module<Tensor, Tensor> model, LabeledDataset queries, LabeledDataset train)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        (Tensor G, Tensor A) Parts(LabeledDataset d)
        {
            var idx = Enumerable.Range(0, d.Count).ToArray();
            var x = d.Inputs(idx).flatten(1);
            var g = model.forward(x).softmax(1) - nn.functional.one_hot(d.Targets(idx), d.NumClasses).to_type(ScalarType.Float32);
            return (g, torch.cat(new[] { x, torch.ones(x.shape[0], 1) }, 1));
        }
        var (gq, aq) = Parts(queries);
        var (gt, at) = Parts(train);
        return (gq.matmul(gt.t()) * aq.matmul(at.t())).MoveToOuterDisposeScope();
    }

    [Fact]
    public void HarnessRunsEndToEndAgainstSameSeedBaselines()
    {
        var s = Embedded.Split;
        var train = s.Train.Subset(DataSource.BalancedSubset(s.Train, 200, 1));
        var queries = s.Test.Subset(Enumerable.Range(0, 40).ToArray());
        var test = s.Test.Subset(Enumerable.Range(40, 300).ToArray());
        var spec = ModelSpec.For("logreg", 1, 28, 28, 10);
        var opts = new TrainOptions { Epochs = 5, BatchSize = 25, LearningRate = 0.002, Seed = 0 };
        using var full = new Trainer(opts).Train(spec, train, null, null).Model;
        using var scores = GradDot(full, queries, train);

        var o = new RemovalOptions { Ks = new[] { 10, 40 }, TrainSeeds = new[] { 0, 1 }, RandomSeed = TestSeed.For() };
        var log = new List<string>();
        var r = Removal.Run(scores, spec, opts, train, queries, test, o, log.Add);

        Assert.Equal(6, r.Settings.Count);
        Assert.Equal(2 + 6 * 2, log.Count);
        // Baseline seed 0 is the model trained above.
        var fm = Measurements.Of(full, queries);
        Assert.Equal(fm.MeanLoss, r.Baseline[0].QueryLoss, 12);
        Assert.Equal(Measurements.Of(full, test).Accuracy, r.Baseline[0].TestAccuracy, 12);
        var summed = Removal.SummedScores(scores);
        foreach (var st in r.Settings)
        {
            Assert.Equal(Removal.Set(st.Kind, summed, st.K, o.RandomSeed), st.Removed);
            var d = st.PerSeed.Select((p, i) => p.QueryLoss - r.Baseline[i].QueryLoss).ToArray();
            Assert.Equal(d.Average(), st.QueryLossChange.Mean, 12);
            Assert.Equal(Math.Abs(d[0] - d[1]) / Math.Sqrt(2), st.QueryLossChange.Std, 12);
        }
        // A removed setting trains on the kept examples with the same seed.
        var h40 = r.Get(RemovalKind.Helpful, 40);
        var kept = Enumerable.Range(0, train.Count).Except(h40.Removed).ToArray();
        using (var m1 = new Trainer(opts with { Seed = 1 }).Train(spec, train.Subset(kept), null, null).Model)
            Assert.Equal(Measurements.Of(m1, queries).Accuracy, h40.PerSeed[1].QueryAccuracy, 12);
        // GradDot is a real attribution: removing the most helpful hurts the queries, more than random or
        // harmful removal (measured here: about +1.8 vs 0.0 and -0.1 in mean query loss).
        var harm = r.Get(RemovalKind.Harmful, 40).QueryLossChange;
        var rand = r.Get(RemovalKind.Random, 40).QueryLossChange;
        string msg = $"helpful {h40.QueryLossChange}, harmful {harm}, random {rand}";
        Assert.True(h40.QueryLossChange.Mean > 0.3, msg);
        Assert.True(h40.QueryLossChange.Mean > rand.Mean + 0.3, msg);
        Assert.True(harm.Mean < h40.QueryLossChange.Mean - 0.3, msg);
    }
}
