using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>The LDS with its noise ceiling as a library call: the rows `evaluate lds` prints, in its order.</summary>
public class LdsEvaluationTests
{
    [Fact]
    public void CeilingsFirstThenEachMethodAgainstTheMeanAndTheFirstSeed()
    {
        int seed = TestSeed.For();
        var train = Embedded.Split.Train.Subset(DataSource.BalancedSubset(Embedded.Split.Train, 60, seed % 1000));
        var queries = Embedded.Split.Test.Subset(Enumerable.Range(0, 10).ToArray());
        var o = new TrainOptions { Epochs = 1, BatchSize = 16, LearningRate = 0.02, Seed = seed % 1000 };
        using var dir = new TempDir();
        var run = new LdsRun(dir.Path, ModelSpec.For("logreg", 1, 28, 28, 10), o, train, queries, new LdsOptions { Subsets = 4, SeedsPerSubset = 3, Seed = 2 });
        run.Run();
        var reps = Enumerable.Range(0, 3).Select(k => run.LoadTargets(k)).ToArray();
        var mean = run.LoadTargets();
        using var scores = torch.randn(new long[] { 10, 60 }, generator: new torch.Generator((ulong)seed));

        var margin = new LdsEvaluation(run, QueryMeasurement.Margin);
        margin.Add("m", scores);
        Assert.Equal(new[] { "ceiling (seed 0 vs 1)", "ceiling (seed 0 vs mean of 2)", "ceiling (3-seed targets, split-half estimate)", "m", "m (seed-0 targets)" },
            margin.Results.Keys);
        Assert.Equal(Lds.Agreement(reps[0].Margins, reps[1].Margins).PerQuery, margin.Results["ceiling (seed 0 vs 1)"].PerQuery);
        var others = new double[4, 10];
        for (int j = 0; j < 4; j++) for (int q = 0; q < 10; q++) others[j, q] = reps[1].Margins[j, q] / 2 + reps[2].Margins[j, q] / 2;
        Assert.Equal(Lds.Agreement(reps[0].Margins, others).Mean, margin.Results["ceiling (seed 0 vs mean of 2)"].Mean, 12);
        // Three seeds: halves of one seed each (seed 0 against seed 1), stepped up threefold by
        // Spearman-Brown, square-rooted; a negative agreement gives 0.
        var halves = Lds.Agreement(reps[0].Margins, reps[1].Margins).PerQuery;
        var estimate = margin.Results["ceiling (3-seed targets, split-half estimate)"].PerQuery;
        for (int q = 0; q < 10; q++)
            if (double.IsNaN(halves[q])) Assert.True(double.IsNaN(estimate[q]));
            else Assert.Equal(halves[q] > 0 ? Math.Sqrt(3 * halves[q] / (1 + 2 * halves[q])) : 0, estimate[q], 12);
        Assert.Equal(Lds.Score(scores, mean.Masks, mean.Margins).PerQuery, margin.Results["m"].PerQuery);
        Assert.Equal(Lds.Score(scores, mean.Masks, reps[0].Margins).PerQuery, margin.Results["m (seed-0 targets)"].PerQuery);

        var loss = new LdsEvaluation(run, QueryMeasurement.Loss);
        loss.Add("m", scores);
        Assert.Equal(Lds.Score(scores, mean.Masks, mean.NegativeLosses()).PerQuery, loss.Results["m"].PerQuery);
        Assert.Equal(Lds.Agreement(reps[0].NegativeLosses(), reps[1].NegativeLosses()).PerQuery, loss.Results["ceiling (seed 0 vs 1)"].PerQuery);
    }
}
