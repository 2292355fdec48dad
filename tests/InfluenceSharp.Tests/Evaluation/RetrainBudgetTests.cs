using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using Xunit.Abstractions;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>Fixed-step retraining (--retrain-budget steps), its cache key, and the upsampling
/// balancing baseline.</summary>
public class RetrainBudgetTests
{
    private readonly ITestOutputHelper output;
    public RetrainBudgetTests(ITestOutputHelper output) { this.output = output; }

    static readonly ModelSpec Spec = ModelSpec.For("logreg", 1, 28, 28, 10);

    static LabeledDataset Train(int n) => Embedded.Split.Train.Subset(DataSource.BalancedSubset(Embedded.Split.Train, n, 1));

    [Fact]
    public void AStepBudgetTrainsExactlyTheFullRunsStepCountOnASmallerSet()
    {
        // n = 100, batch 16: 7 steps per epoch, 3 epochs = 21 steps on the full set; with k = 13
        // removed (87 examples, 6 steps per epoch) the epochs budget takes 18 steps, the steps budget 21.
        var train = Train(100);
        var opts = new TrainOptions { Epochs = 3, BatchSize = 16, LearningRate = 0.01, Seed = TestSeed.For() };
        output.WriteLine(TestSeed.Describe());
        var kept = train.Subset(Enumerable.Range(13, 87).ToArray());
        var steps = RetrainBudgets.For(opts, train.Count, RetrainBudget.Steps);
        Assert.Equal(21, steps.TotalSteps);
        Assert.Null(RetrainBudgets.For(opts, train.Count, RetrainBudget.Epochs).TotalSteps);
        Assert.Null(RetrainBudgets.For(opts with { LbfgsTolerance = 1e-4, WeightDecay = 1e-3 }, train.Count, RetrainBudget.Steps).TotalSteps);

        using var tmp = new TempDir();
        var r = new Trainer(steps).Train(Spec, kept, null, tmp.File("run"));
        Assert.Equal(21, r.Steps);
        Assert.Equal(4, r.Checkpoints.Count);                 // ⌈21 / 6⌉ epochs, the last one partial
        Assert.Equal(21, r.Checkpoints[^1].Info.Step);
        r.Model.Dispose();
        var e = new Trainer(RetrainBudgets.For(opts, train.Count, RetrainBudget.Epochs)).Train(Spec, kept, null, null);
        e.Model.Dispose();
        Assert.Equal(18, e.Steps);
    }

    [Fact]
    public void OnTheFullSetTheStepBudgetTrainsBitIdenticallyToTheEpochs()
    {
        var train = Train(60);
        foreach (var schedule in new[] { LrSchedule.Constant, LrSchedule.OneCycle })
        {
            var opts = new TrainOptions { Epochs = 3, BatchSize = 16, LearningRate = 0.02, Schedule = schedule, Seed = TestSeed.For() };
            using var a = new Trainer(opts).Train(Spec, train, null, null).Model;
            using var b = new Trainer(RetrainBudgets.For(opts, train.Count, RetrainBudget.Steps)).Train(Spec, train, null, null).Model;
            var pa = a.parameters().ToArray();
            var pb = b.parameters().ToArray();
            for (int i = 0; i < pa.Length; i++) Assert.True(TensorAssert.BitEqual(pa[i], pb[i]), $"{schedule}: parameter {i} differs");
        }
    }

    [Fact]
    public void TheOneCycleScheduleSpansTheStepBudgetWhateverTheEpochLength()
    {
        // 5 epochs, 100 steps: the peak is at epoch 1 = step 20 and the rate reaches 0 at step 100,
        // whether an epoch of the (smaller) retraining set is 17 or 20 steps.
        var o = new TrainOptions { Epochs = 5, LearningRate = 0.4, Schedule = LrSchedule.OneCycle, TotalSteps = 100 };
        foreach (long spe in new long[] { 17, 20 })
        {
            Assert.Equal(0.2, o.LrAt(10, spe), 12);
            Assert.Equal(0.4, o.LrAt(20, spe), 12);
            Assert.Equal(0.2, o.LrAt(60, spe), 12);
            Assert.Equal(0.0, o.LrAt(100, spe), 12);
        }
        // Without a budget it follows the set's own epochs: 17-step epochs peak at 17.
        Assert.Equal(0.4, (o with { TotalSteps = null }).LrAt(17, 17), 12);
    }

    [Fact]
    public void CurationRetrainsWithTheBudgetAndNeverReusesResultsOfTheOtherBudget()
    {
        var train = Train(100);
        var test = Embedded.Split.Test.Subset(Enumerable.Range(0, 50).ToArray());
        var opts = new TrainOptions { Epochs = 2, BatchSize = 16, LearningRate = 0.01 };
        var settings = new List<CurationSetting>
        {
            new("none", "none", null, 0, Array.Empty<int>()),
            new("random-k13", "random", null, 13, Enumerable.Range(50, 13).ToArray()),
        };
        int[] seeds = { TestSeed.For() % 1000 };
        output.WriteLine(TestSeed.Describe());
        using var tmp = new TempDir();
        string dir = tmp.File("retrain");
        var epochs = new CurationRun(dir, Spec, opts, train, test, settings, seeds, RetrainBudget.Epochs);
        Assert.Equal(2, epochs.Run());
        Assert.Equal(12, epochs.TryLoad(1, 0)!.Steps);         // 87 examples: 6 steps per epoch
        Assert.Equal("epochs", epochs.TryLoad(1, 0)!.Budget);

        var steps = new CurationRun(dir, Spec, opts, train, test, settings, seeds, RetrainBudget.Steps);
        Assert.Equal(2, steps.Pending().Length);                // nothing of the epochs budget is reused
        // A result of the other budget under this budget's file name is stale too.
        File.Copy(epochs.ResultPath(1, 0), steps.ResultPath(1, 0));
        Assert.Null(steps.TryLoad(1, 0));
        Assert.Equal(2, steps.Run());
        Assert.Equal(14, steps.TryLoad(0, 0)!.Steps);           // 100 examples: 7 steps per epoch
        Assert.Equal(14, steps.TryLoad(1, 0)!.Steps);           // the full run's count with 13 removed
        Assert.Equal("steps", steps.TryLoad(1, 0)!.Budget);
        Assert.Empty(epochs.Pending());                          // the epochs results are still there

        // A cache from before budgets (no budget field) counts as the epochs budget.
        var old = InfluenceSharp.Formats.Json.ReadFile<CurationOutcome>(epochs.ResultPath(0, 0)) with { Budget = null, Steps = null };
        InfluenceSharp.Formats.Json.WriteFile(epochs.ResultPath(0, 0), old);
        Assert.NotNull(epochs.TryLoad(0, 0));
        Assert.Equal("steps", steps.TryLoad(0, 0)!.Budget);
    }

    [Fact]
    public void EvaluateRemoveRetrainsUnderTheChosenBudget()
    {
        var train = Train(100);
        var queries = Embedded.Split.Test.Subset(Enumerable.Range(0, 20).ToArray());
        var opts = new TrainOptions { Epochs = 2, BatchSize = 16, LearningRate = 0.01 };
        int seed = TestSeed.For() % 1000;
        output.WriteLine(TestSeed.Describe());
        using var scores = TorchSharp.torch.zeros(20, 100);
        var o = new RemovalOptions { Ks = new[] { 13 }, TrainSeeds = new[] { seed }, Kinds = new[] { RemovalKind.Random }, Budget = RetrainBudget.Steps };
        var r = Removal.Run(scores, Spec, opts, train, queries, queries, o);
        var kept = train.Subset(Enumerable.Range(0, 100).Except(r.Settings[0].Removed).ToArray());
        double QueryLoss(TrainOptions t)
        {
            using var m = new Trainer(t with { Seed = seed }).Train(Spec, kept, null, null).Model;
            return Measurements.Of(m, queries).MeanLoss;
        }
        double steps = QueryLoss(RetrainBudgets.For(opts, 100, RetrainBudget.Steps));
        double epochs = QueryLoss(opts);
        Assert.Equal(steps, r.Settings[0].PerSeed[0].QueryLoss);
        Assert.NotEqual(epochs, r.Settings[0].PerSeed[0].QueryLoss);
        var e = Removal.Run(scores, Spec, opts, train, queries, queries, o with { Budget = RetrainBudget.Epochs });
        Assert.Equal(epochs, e.Settings[0].PerSeed[0].QueryLoss);
    }

    [Fact]
    public void UpsamplingBringsEveryGroupToTheLargestSizeWithSeededDuplicates()
    {
        var rng = TestSeed.Random();
        output.WriteLine(TestSeed.Describe());
        // Groups of sizes 40, 7, 3, 0 (empty) and 19, shuffled.
        var groups = Enumerable.Repeat(0, 40).Concat(Enumerable.Repeat(1, 7)).Concat(Enumerable.Repeat(2, 3)).Concat(Enumerable.Repeat(4, 19)).ToArray();
        rng.Shuffle(groups);
        var added = CurationRun.UpsampleAdded(groups, 5, 0);
        Assert.Equal(added, CurationRun.UpsampleAdded(groups, 5, 0));
        Assert.NotEqual(added, CurationRun.UpsampleAdded(groups, 5, 1));
        var counts = new int[5];
        foreach (var g in groups) counts[g]++;
        foreach (var i in added) counts[groups[i]]++;
        Assert.Equal(new[] { 40, 40, 40, 0, 40 }, counts);
        // Within a group, every member is duplicated ⌊need/size⌋ or ⌊need/size⌋ + 1 times.
        var perIndex = added.GroupBy(i => i).ToDictionary(x => x.Key, x => x.Count());
        foreach (var (g, size) in new[] { (1, 7), (2, 3), (4, 19) })
        {
            int need = 40 - size;
            var members = Enumerable.Range(0, groups.Length).Where(i => groups[i] == g).ToArray();
            foreach (var m in members)
            {
                int c = perIndex.GetValueOrDefault(m);
                Assert.InRange(c, need / size, need / size + 1);
            }
        }
        Assert.DoesNotContain(added, i => groups[i] == 0);
        Assert.True(added.SequenceEqual(added.Order()));

        // The upsampled set trains on kept + duplicates, and its hash differs from the plain set's.
        var plain = new CurationSetting("x", "balance-upsample", null, 0, Array.Empty<int>());
        var up = plain with { Duplicated = added };
        Assert.NotEqual(plain.RemovedHash(), up.RemovedHash());
        Assert.Equal(groups.Length + added.Length, up.Indices(groups.Length).Length);
    }
}
