using InfluenceSharp.Models;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

/// <summary>TrainOptions.DropLast (--drop-last): each epoch's incomplete final batch is skipped, the
/// step count and the one-cycle schedule follow the complete batches only.</summary>
public class DropLastTests
{
    [Fact]
    public void SkipsTheIncompleteBatchAndSchedulesOverCompleteOnes()
    {
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 45).ToArray());
        var spec = ModelSpec.For("logreg", 1, 28, 28, 10);
        const int batch = 8, epochs = 2;
        const double lr = 0.2;
        foreach (bool drop in new[] { true, false })
        {
            using var dir = new TempDir();
            var o = new TrainOptions { Epochs = epochs, BatchSize = batch, LearningRate = lr, Schedule = LrSchedule.OneCycle, PeakEpoch = 1, Seed = 5, DropLast = drop };
            new Trainer(o).Train(spec, train, null, dir.Path).Model.Dispose();
            var ckpts = Checkpoint.List(dir.Path);
            long perEpoch = drop ? 45 / batch : (45 + batch - 1) / batch;      // 5 complete batches, or 6 with the short one
            Assert.Equal(new[] { perEpoch, 2 * perEpoch }, ckpts.Select(c => c.Info.Step));
            // Epoch 2 decays linearly from the peak (step perEpoch) to 0 at the last step actually taken.
            double expected = Enumerable.Range((int)perEpoch, (int)perEpoch).Select(t => lr * (2.0 * perEpoch - t) / perEpoch).Average();
            Assert.True(Math.Abs(ckpts[1].Info.LearningRate - expected) < 1e-12, $"drop {drop}: {ckpts[1].Info.LearningRate} vs {expected}");
            Assert.Equal(drop, ckpts[1].Info.Training!.DropLast);
        }
        // A fixed-step retraining budget counts the full set's complete batches only.
        var budget = RetrainBudgets.For(new TrainOptions { Epochs = 3, BatchSize = 8, DropLast = true }, 45, RetrainBudget.Steps);
        Assert.Equal(3 * 5, budget.TotalSteps);
        Assert.Equal(3 * 6, RetrainBudgets.For(new TrainOptions { Epochs = 3, BatchSize = 8 }, 45, RetrainBudget.Steps).TotalSteps);
        using var tiny = new TempDir();
        var e = Assert.Throws<InfluenceSharpException>(() => new Trainer(new TrainOptions { BatchSize = 64, DropLast = true }).Train(spec, train, null, tiny.Path));
        Assert.Contains("no complete batch", e.Message);
    }
}
