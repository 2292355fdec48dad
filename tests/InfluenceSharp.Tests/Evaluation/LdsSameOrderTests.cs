using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>LDS with same-order retraining: each subset is the run replayed with the removed examples'
/// weights at 0, the setting whose first-order prediction unrolled attribution computes exactly.</summary>
public class LdsSameOrderTests
{
    [Fact]
    public void SameOrderRetrainingReplaysTheRunWithoutTheRemovedExamplesAndUnrolledPredictsIt()
    {
        using var dir = new TempDir();
        var split = Embedded.Split;
        var train = split.Train.Subset(Enumerable.Range(0, 200).ToArray());
        var queries = split.Test.Subset(Enumerable.Range(0, 8).ToArray());
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 16 });
        // A smooth recipe (no momentum, small steps): the regime where one run's response to removals is near-linear.
        var o = new TrainOptions { Epochs = 2, BatchSize = 25, LearningRate = 0.02, Momentum = 0, WeightDecay = 5e-4, Seed = 1 };
        var run = new Trainer(o).Train(spec, train, null, dir.File("run"));
        var lds = new LdsRun(dir.File("lds"), spec, o, train, queries,
            new LdsOptions { Subsets = 16, Alpha = 0.95, Retrain = LdsRetrain.SameOrder });
        lds.Run();
        var targets = lds.LoadTargets();

        // Subset 0 is the run with its removed examples at weight 0.
        var w = targets.Masks[0].Select(b => b ? 1.0 : 0.0).ToArray();
        using var replayed = new Trainer(o).Train(spec, train, null, null, exampleWeights: w).Model;
        var m = Measurements.Of(replayed, queries);
        for (int q = 0; q < queries.Count; q++) Assert.Equal(m.Margin[q], targets.Margins[0, q]);

        var method = UnrolledAttribution.FromRun(dir.File("run"), train, new ClassificationTask(QueryMeasurement.Margin));
        using var scores = method.PairwiseMatrix(queries, train);
        Assert.Equal(0.0, method.ReplayDeviation);
        var result = Lds.Score(scores, targets.Masks, targets.Margins);
        // Measured 0.74 here (16 subsets, 8 queries, a 16-unit ReLU Mlp): removing 5% at once is
        // less linear than the single removals of the float64 oracles.
        Assert.True(result.Mean > 0.6, $"unrolled same-order LDS {result.Mean:F3}");

        // The seeded protocol refuses several seeds with same-order, and its cache is another one.
        Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.File("lds2"), spec, o, train, queries,
            new LdsOptions { Subsets = 4, SeedsPerSubset = 2, Retrain = LdsRetrain.SameOrder }));
        var e = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.File("lds"), spec, o, train, queries,
            new LdsOptions { Subsets = 16, Alpha = 0.95 }));
        Assert.Contains("retrain", e.Message);
    }
}
