using System.Text.Json;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

/// <summary>TracIn's step size η_c is the checkpoint sidecar's learning rate: for a one-cycle schedule
/// it must be the mean of the rates the epoch's steps used, not the last step's.</summary>
public class OneCycleSidecarTests
{
    /// <summary>The triangular one-cycle schedule written out from its definition (TrainOptions' doc):
    /// linear warm-up from 0 at step 0 to the peak rate at step peakEpoch·stepsPerEpoch, then linear
    /// decay to 0 at the end of training.</summary>
    static double Rate(double peakLr, long t, double peakStep, double totalSteps) =>
        t <= peakStep ? peakLr * t / peakStep : peakLr * (totalSteps - t) / (totalSteps - peakStep);

    [Theory]
    [InlineData(null)]   // default peak: epochs / 5
    [InlineData(1.4)]    // peak in the middle of epoch 2
    public void SidecarLearningRateIsTheMeanOfTheEpochsStepRates(double? peakEpoch)
    {
        using var dir = new TempDir();
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 90).ToArray());
        const int epochs = 3, batch = 20;                      // 5 steps per epoch, the last one short
        const double lr = 0.3;
        var o = new TrainOptions { Epochs = epochs, BatchSize = batch, LearningRate = lr, Schedule = LrSchedule.OneCycle, PeakEpoch = peakEpoch, Seed = 3 };
        new Trainer(o).Train(ModelSpec.For("logreg", 1, 28, 28, 10), train, null, dir.Path).Model.Dispose();

        long steps = (90 + batch - 1) / batch;
        double total = epochs * steps, peak = (peakEpoch ?? epochs / 5.0) * steps;
        var ckpts = Checkpoint.List(dir.Path);
        Assert.Equal(epochs, ckpts.Count);
        var etas = new List<double>();
        for (int e = 1; e <= epochs; e++)
        {
            var rates = Enumerable.Range((int)((e - 1) * steps), (int)steps).Select(t => Rate(lr, t, peak, total)).ToArray();
            double expected = rates.Average();
            // Read the sidecar as a user would (JSON), not only through the library's record.
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.Path, $"epoch-{e:D4}.json")));
            double recorded = json.RootElement.GetProperty("learning_rate").GetDouble();
            Assert.True(Math.Abs(recorded - expected) < 1e-12, $"epoch {e}: sidecar learning_rate {recorded}, mean of the step rates {expected} (last step's {rates[^1]})");
            Assert.Equal(recorded, ckpts[e - 1].Info.LearningRate);
            Assert.NotEqual(rates[^1], expected, 6);            // the test distinguishes mean from last
            etas.Add(expected);
        }
        // TracIn uses these as its step sizes.
        var tracin = TracInCheckpoint.From(ckpts);
        Assert.Equal(etas, tracin.Select(c => c.StepSize), new Methods.ToleranceComparer(1e-12));
    }
}
