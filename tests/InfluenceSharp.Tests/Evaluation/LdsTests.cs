using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;

namespace InfluenceSharp.Tests.Evaluation;

public class LdsScoreTests
{
    [Fact]
    public void MatchesAHandComputedTinyCase()
    {
        // 2 queries, 3 training examples, 3 subsets {0,1}, {1,2}, {0,2}.
        using var scores = torch.tensor(new double[] { 1, 2, -1, 0, 1, 1 }, new long[] { 2, 3 });
        var masks = new[] { new[] { true, true, false }, new[] { false, true, true }, new[] { true, false, true } };
        var targets = new double[,] { { 0.5, 0.1 }, { 0.2, 0.3 }, { 0.9, 0.2 } };
        var r = Lds.Score(scores, masks, targets);
        // q0: predictions 3, 1, 0 (ranks 3,2,1), targets ranks 2,1,3: sxy = -1, sxx = syy = 2 -> -0.5.
        Assert.Equal(-0.5, r.PerQuery[0], 12);
        // q1: predictions 1, 2, 1 (ranks 1.5,3,1.5), targets ranks 1,3,2: sxy = 1.5, sxx = 1.5, syy = 2 -> sqrt(3)/2.
        Assert.Equal(Math.Sqrt(3) / 2, r.PerQuery[1], 12);
        Assert.Equal((-0.5 + Math.Sqrt(3) / 2) / 2, r.Mean, 12);
        // Sample std of two values d apart is d/sqrt(2); divided by sqrt(2) that is d/2.
        Assert.Equal((Math.Sqrt(3) / 2 + 0.5) / 2, r.StandardError, 12);
        Assert.Equal(0, r.UndefinedQueries);
    }

    [Fact]
    public void ScoresThatAreTheTrueLinearModelGetLdsOne()
    {
        var rng = TestSeed.Random();
        int nq = 4, n = 30, m = 25;
        var w = Enumerable.Range(0, nq * n).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var masks = LdsSubsets.Masks(n, m, 0.5, rng.Next());
        var targets = new double[m, nq];
        for (int j = 0; j < m; j++)
            for (int q = 0; q < nq; q++)
                for (int i = 0; i < n; i++) if (masks[j][i]) targets[j, q] += w[q * n + i];
        using var s = torch.tensor(w, new long[] { nq, n });
        Assert.Equal(1, Lds.Score(s, masks, targets).Mean, 9);
        using var neg = s.neg();
        Assert.Equal(-1, Lds.Score(neg, masks, targets).Mean, 9);
        Assert.Throws<InfluenceSharpException>(() => Lds.Score(s, masks, new double[m, nq + 1]));
    }

    [Fact]
    public void MasksAreDeterministicBySeedAndHaveSizeRoundAlphaN()
    {
        int seed = TestSeed.For();
        var a = LdsSubsets.Masks(101, 6, 0.5, seed);
        var b = LdsSubsets.Masks(101, 10, 0.5, seed);
        var c = LdsSubsets.Masks(101, 6, 0.5, seed + 1);
        for (int j = 0; j < 6; j++)
        {
            Assert.Equal(a[j], b[j]);           // mask j does not depend on m
            Assert.Equal(51, a[j].Count(v => v)); // round(50.5) = 51
        }
        Assert.NotEqual(a[0], a[1]);
        Assert.False(a.Zip(c).All(p => p.First.SequenceEqual(p.Second)));
        Assert.Equal(3, LdsSubsets.Mask(10, 0.3, seed, 0).Count(v => v));
        // Pinned: System.Random(int) and the seed mixing are stable across processes and runs.
        Assert.Equal(new[] { 0, 4, 6, 8, 9 }, LdsSubsets.Indices(LdsSubsets.Mask(10, 0.5, 42, 0)));
        Assert.Throws<InfluenceSharpException>(() => LdsSubsets.Masks(10, 4, 1.0, 0));
    }
}

public class LdsRunTests
{
    static (LabeledDataset Train, LabeledDataset Queries) SmallData()
    {
        var s = Embedded.Split;
        return (s.Train.Subset(DataSource.BalancedSubset(s.Train, 200, 3)), s.Test.Subset(Enumerable.Range(0, 30).ToArray()));
    }

    static readonly ModelSpec Spec = ModelSpec.For("logreg", 1, 28, 28, 10);
    static readonly TrainOptions Train = new() { Epochs = 2, BatchSize = 25, LearningRate = 0.01, Seed = 5 };
    static readonly LdsOptions Options = new() { Subsets = 4, Alpha = 0.5, Seed = 11, SeedsPerSubset = 2 };

    [Fact]
    public void HalfFinishedRunResumesWithOnlyTheRemainingSubsetsAndEqualsAFreshRun()
    {
        var (train, queries) = SmallData();
        using var dir = new TempDir();
        string a = Path.Combine(dir.Path, "a"), b = Path.Combine(dir.Path, "b");

        var first = new LdsRun(a, Spec, Train, train, queries, Options);
        Assert.Equal(new[] { 0, 2 }, first.Run(Shard.Parse("0/2")));
        Assert.Equal(new[] { 1, 3 }, first.Pending());
        var e = Assert.Throws<InfluenceSharpException>(() => first.LoadTargets());
        Assert.Contains("2 of 4", e.Message);

        var resumed = new LdsRun(a, Spec, Train, train, queries, Options);
        Assert.Equal(new[] { 1, 3 }, resumed.Run());
        Assert.Empty(resumed.Run());
        var ta = resumed.LoadTargets();

        var fresh = new LdsRun(b, Spec, Train, train, queries, Options);
        Assert.Equal(new[] { 0, 1, 2, 3 }, fresh.Run());
        var tb = fresh.LoadTargets();
        Assert.Equal(ta.Margins, tb.Margins);
        Assert.Equal(ta.Losses, tb.Losses);
        Assert.Equal(ta.Masks, tb.Masks);
        Assert.Equal(LdsSubsets.Masks(200, 4, 0.5, 11), ta.Masks);
        // Different subsets give different models; the targets are real margins of trained models.
        Assert.NotEqual(ta.Margins[0, 0], ta.Margins[1, 0]);
        Assert.Equal(-ta.Losses[2, 5], ta.NegativeLosses()[2, 5]);

        // The stored values are the mean over the subset's seeds of a model trained as documented.
        var subset = train.Subset(LdsSubsets.Indices(ta.Masks[3]));
        double sum = 0;
        for (int k = 0; k < 2; k++)
        {
            using var m = new Trainer(Train with { Seed = Seeds.Derive(Train.Seed, 3, k) }).Train(Spec, subset, null, null).Model;
            sum += Measurements.Of(m, queries).Margin[7];
        }
        Assert.Equal(sum / 2, ta.Margins[3, 7], 12);
    }

    [Fact]
    public void CacheMadeWithOtherSettingsIsRefusedNamingTheField()
    {
        var (train, queries) = SmallData();
        using var dir = new TempDir();
        _ = new LdsRun(dir.Path, Spec, Train, train, queries, Options);
        var e = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.Path, Spec, Train with { LearningRate = 0.02 }, train, queries, Options));
        Assert.Contains("'training.learning_rate'", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.Path, Spec, Train, train, queries, Options with { Alpha = 0.4 }));
        Assert.Contains("'alpha'", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.Path, ModelSpec.For("mlp", 1, 28, 28, 10), Train, train, queries, Options));
        Assert.Contains("'model.", e.Message);
        var otherQueries = Embedded.Split.Test.Subset(Enumerable.Range(30, 30).ToArray());
        e = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.Path, Spec, Train, train, otherQueries, Options));
        Assert.Contains("'query_fingerprint'", e.Message);
        Assert.Contains("lds.json", e.Message);
        _ = new LdsRun(dir.Path, Spec, Train, train, queries, Options); // the same settings still open it
    }
}

public class MeasurementsTests
{
    [Fact]
    public void LossIsSoftplusOfMinusMarginAndMatchesTheTrainerEvaluation()
    {
        var s = Embedded.Split;
        var train = s.Train.Subset(Enumerable.Range(0, 300).ToArray());
        var test = s.Test.Subset(Enumerable.Range(0, 200).ToArray());
        using var m = new Trainer(new TrainOptions { Epochs = 1, BatchSize = 50, LearningRate = 0.01, Seed = TestSeed.For() })
            .Train(ModelSpec.For("logreg", 1, 28, 28, 10), train, null, null).Model;
        var r = Measurements.Of(m, test, batchSize: 64);
        for (int i = 0; i < test.Count; i++)
            Assert.Equal(Math.Log(1 + Math.Exp(-r.Margin[i])), r.Loss[i], 9);
        var (loss, acc) = Trainer.Evaluate(m, test);
        Assert.Equal(loss, r.MeanLoss, 4);
        Assert.Equal(acc, r.Accuracy, 12);
        // margin > 0 means p_y > 1/2, which implies the label is the argmax (not conversely).
        Assert.All(Enumerable.Range(0, test.Count).Where(i => r.Margin[i] > 0), i => Assert.True(r.Correct[i]));
        Assert.Contains(r.Margin, v => v > 0);
    }
}
