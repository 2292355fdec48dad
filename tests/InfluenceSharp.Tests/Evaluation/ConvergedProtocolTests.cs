using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>The converged LDS protocol (train --lbfgs-tol), seed averaging (--seeds-per-subset) and
/// the noise ceiling.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class ConvergedProtocolTests
{
    static readonly ModelSpec Spec = ModelSpec.For("logreg", 1, 28, 28, 10);

    static LabeledDataset Small(int n, int seed) => Embedded.Split.Train.Subset(DataSource.BalancedSubset(Embedded.Split.Train, n, seed));

    /// <summary>∇ of mean CE + (L2/2)‖θ‖² for logistic regression, written out in float64:
    /// d = (softmax − onehot)/n, ∇W = dᵀx + L2·W, ∇b = Σd + L2·b.</summary>
    static double MaxGradient(nn.Module<Tensor, Tensor> model, LabeledDataset data, double l2)
    {
        using var _ = no_grad();
        var all = Enumerable.Range(0, data.Count).ToArray();
        var x = data.Inputs(all).flatten(1).to(ScalarType.Float64);
        var y = data.Targets(all);
        var ps = model.parameters().ToList();
        var w = ps.First(p => p.dim() == 2).to(ScalarType.Float64);
        var b = ps.First(p => p.dim() == 1).to(ScalarType.Float64);
        var p = nn.functional.softmax(x.matmul(w.mT) + b, 1);
        var d = (p - nn.functional.one_hot(y, 10).to(ScalarType.Float64)) / data.Count;
        var gw = d.mT.matmul(x) + l2 * w;
        var gb = d.sum(new long[] { 0 }) + l2 * b;   // (sum(0) would be sum(ScalarType 0))
        return Math.Max(gw.abs().max().item<double>(), gb.abs().max().item<double>());
    }

    [Fact]
    public void LbfgsReachesTheConvergenceCriterionAndTheUniqueOptimumOnATinyLogisticRegression()
    {
        int seed = TestSeed.For();
        var train = Small(60, seed % 1000);
        const double l2 = 0.05, tol = 1e-6;
        var o = new TrainOptions { WeightDecay = l2, LbfgsTolerance = tol, Seed = seed % 1000 };
        var trainer = new Trainer(o);
        using var a = trainer.Train(Spec, train, null, null).Model;
        Assert.NotNull(trainer.LastLbfgs);
        Assert.True(trainer.LastLbfgs!.MaxGradient <= tol, $"seed {seed}: L-BFGS reports max |grad| {trainer.LastLbfgs.MaxGradient}");
        // Checked independently of the optimiser, at the float32 weights it returns (rounding the
        // weights to float32 moves the gradient by ~1e-6 here).
        double g = MaxGradient(a, train, l2);
        Assert.True(g < 2e-5, $"seed {seed}: closed-form max |grad| {g} at the returned weights");
        // Strictly convex: another initialisation reaches the same weights.
        using var b = new Trainer(o with { Seed = o.Seed + 1 }).Train(Spec, train, null, null).Model;
        var wa = torch.cat(a.parameters().Select(p => p.flatten()).ToArray());
        var wb = torch.cat(b.parameters().Select(p => p.flatten()).ToArray());
        double diff = ((wa - wb).abs().max() / wa.abs().max()).item<float>();
        Assert.True(diff < 1e-3, $"seed {seed}: two initialisations end {diff} apart (relative max)");
        // The check discriminates: SGD for one epoch is nowhere near the optimum.
        using var sgd = new Trainer(new TrainOptions { WeightDecay = l2, Epochs = 1, Seed = o.Seed }).Train(Spec, train, null, null).Model;
        Assert.True(MaxGradient(sgd, train, l2) > 100 * tol, $"seed {seed}: one SGD epoch is already converged?");
    }

    [Fact]
    public void LbfgsRefusesSettingsWithoutAUniqueOptimum()
    {
        var train = Small(30, 1);
        var e = Assert.Throws<InfluenceSharpException>(() => new Trainer(new TrainOptions { WeightDecay = 0, LbfgsTolerance = 1e-6 }).Train(Spec, train, null, null));
        Assert.Contains("--weight-decay", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => new Trainer(new TrainOptions { LbfgsTolerance = 1e-6 }).Train(ModelSpec.For("resnet9", 1, 28, 28, 10), train, null, null));
        Assert.Contains("BatchNorm", e.Message);
    }

    /// <summary>--seeds-per-subset S: replicate k of subset j is a model trained with seed
    /// Derive(seed, j, k); the targets are the mean of the S replicates; each replicate can be read alone.</summary>
    [Fact]
    public void SeedAveragedTargetsAreTheMeanOfReplicatesEachAModelOfItsOwnSeed()
    {
        int seed = TestSeed.For();
        var train = Small(80, seed % 1000);
        var queries = Embedded.Split.Test.Subset(Enumerable.Range(0, 12).ToArray());
        var o = new TrainOptions { Epochs = 1, BatchSize = 16, LearningRate = 0.02, Seed = seed % 1000 };
        using var dir = new TempDir();
        var run = new LdsRun(dir.Path, Spec, o, train, queries, new LdsOptions { Subsets = 3, SeedsPerSubset = 3, Seed = 4 });
        run.Run();
        var mean = run.LoadTargets();
        var reps = Enumerable.Range(0, 3).Select(k => run.LoadTargets(k)).ToArray();
        for (int j = 0; j < 3; j++)
            for (int q = 0; q < 12; q++)
            {
                Assert.Equal((reps[0].Margins[j, q] + reps[1].Margins[j, q] + reps[2].Margins[j, q]) / 3, mean.Margins[j, q], 12);
                Assert.Equal((reps[0].Losses[j, q] + reps[1].Losses[j, q] + reps[2].Losses[j, q]) / 3, mean.Losses[j, q], 12);
            }
        // Replicate 2 of subset 1 is the model of its own seed (not a copy of replicate 0).
        var subset = train.Subset(LdsSubsets.Indices(mean.Masks[1]));
        using var m = new Trainer(o with { Seed = Seeds.Derive(o.Seed, 1, 2) }).Train(Spec, subset, null, null).Model;
        var byHand = Measurements.Of(m, queries).Margin;
        for (int q = 0; q < 12; q++) Assert.Equal(byHand[q], reps[2].Margins[1, q], 12);
        Assert.True(Enumerable.Range(0, 12).Any(q => Math.Abs(reps[0].Margins[1, q] - reps[2].Margins[1, q]) > 1e-6), $"seed {seed}: seeds gave identical models");
        Assert.Throws<InfluenceSharpException>(() => run.LoadTargets(3));
    }

    [Fact]
    public void AgreementIsOneForIdenticalTargetsAndMatchesAHandCase()
    {
        var a = new double[,] { { 1, 5 }, { 2, 4 }, { 3, 6 } };
        var r = Lds.Agreement(a, a);
        Assert.Equal(1, r.Mean, 12);
        // q0: ranks 1,2,3 vs 3,2,1 -> -1; q1: ranks 2,1,3 vs 2,1,3 -> 1.
        var b = new double[,] { { 9, 5 }, { 8, 4 }, { 7, 6 } };
        r = Lds.Agreement(a, b);
        Assert.Equal(-1, r.PerQuery[0], 12);
        Assert.Equal(1, r.PerQuery[1], 12);
        Assert.Equal(0, r.Mean, 12);
    }

    /// <summary>End to end: train --lbfgs-tol, then evaluate lds with 2 seeds per subset. Retraining
    /// to the unique optimum makes the seed irrelevant, so the noise ceiling is 1.</summary>
    [Fact]
    public void CliConvergedRunRetrainsToTheOptimumSoTheNoiseCeilingIsOne()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", "embedded", "--model", "logreg", "--train-count", "60", "--weight-decay", "0.05", "--lbfgs-tol", "1e-6", "--out", run);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("L-BFGS:", r.Err);
        Assert.Single(Checkpoint.List(run));
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "ekfac", "--subsets", "4", "--seeds-per-subset", "2", "--query-count", "8", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var line = r.Out.Split('\n').Single(l => l.Contains("ceiling (seed 0 vs 1)"));
        Assert.Contains("1.0000", line);
        Assert.Contains("ekfac (seed-0 targets)", r.Out);
    }
}
