using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Diagnostics;

/// <summary>An IProgress that records synchronously (Progress&lt;T&gt; would post to a context).</summary>
public sealed class RecordingProgress : IProgress<ProgressUpdate>
{
    public List<ProgressUpdate> Updates { get; } = new();
    public void Report(ProgressUpdate value) { lock (Updates) Updates.Add(value); }
}

public class ProgressTests
{
    [Fact]
    public void StartWithoutSinkIsSilent()
    {
        Assert.Null(ProgressReporter.Start(null, "x", 10));
    }

    [Fact]
    public void ThrottlesUpdatesAndSendsOneFinalUpdate()
    {
        var sink = new RecordingProgress();
        using (var bar = ProgressReporter.Start(sink, "stage", 1000, "ex")!)
        {
            for (int i = 1; i <= 1000; i++) bar.Update(i, i == 1000 ? "last" : null);
        }
        // The first update goes out at once, the rest of a fast loop within 0.2 s are dropped; the
        // final update comes from Dispose, with the last done count and suffix.
        Assert.InRange(sink.Updates.Count(u => !u.Final), 1, 3);
        var final = Assert.Single(sink.Updates, u => u.Final);
        Assert.Same(final, sink.Updates[^1]);
        Assert.Equal(("stage", 1000L, 1000L, "ex", "last"), (final.Label, final.Done, final.Total, final.Unit, final.Suffix));
        Assert.Equal(1.0, final.Fraction);
        Assert.True(final.Rate > 0);
        Assert.Equal(0.0, final.EtaSeconds);
    }

    [Fact]
    public void CompleteIsSentOnceAndLaterUpdatesAreIgnored()
    {
        var sink = new RecordingProgress();
        var bar = new ProgressReporter(sink, "s", 4);
        bar.Update(2);
        bar.Complete("done");
        bar.Update(3);
        bar.Complete();
        bar.Dispose();
        Assert.Equal(2, sink.Updates.Count);
        Assert.True(sink.Updates[1].Final);
        Assert.Equal("done", sink.Updates[1].Suffix);
        Assert.Equal(2, sink.Updates[1].Done);
    }

    [Fact]
    public void NothingDoneSendsNoFinalUpdate()
    {
        var sink = new RecordingProgress();
        new ProgressReporter(sink, "s", 4).Dispose();
        Assert.Empty(sink.Updates);
    }

    [Fact]
    public void TrainerReportsEachEpochWithItsMetricsInTheFinalUpdate()
    {
        var s = Embedded.Split;
        var small = s.Train.Subset(Enumerable.Range(0, 300).ToArray());
        var test = s.Test.Subset(Enumerable.Range(0, 100).ToArray());
        var sink = new RecordingProgress();
        new Trainer(new TrainOptions { Epochs = 2, BatchSize = 100 }, sink).Train(ModelSpec.For("logreg", 1, 28, 28, 10), small, test, null).Model.Dispose();
        var finals = sink.Updates.Where(u => u.Final).ToList();
        Assert.Equal(new[] { "epoch 1/2", "epoch 2/2" }, finals.Select(u => u.Label));
        Assert.All(finals, u => Assert.Equal(300, u.Done));
        Assert.All(finals, u => Assert.Matches(@"^train loss [0-9.]+ acc [0-9.]+%, test loss [0-9.]+ acc [0-9.]+%$", u.Suffix));
    }

    [Fact]
    public void MethodOptionsCarryTheSinkAndNullIsSilent()
    {
        var s = Embedded.Split;
        var train = s.Train.Subset(Enumerable.Range(0, 40).ToArray());
        using var model = new Trainer(new TrainOptions { Epochs = 1, BatchSize = 20 }).Train(ModelSpec.For("logreg", 1, 28, 28, 10), train, null, null).Model;
        var sink = new RecordingProgress();
        using (var m = new TracInCPFast(new[] { new TracInCheckpoint(model, 1) }, null, new TracInFastOptions { Progress = sink, TrainBatchSize = 16 }))
            ((IAttributionMethod)m).SelfInfluence(train);
        Assert.Contains(sink.Updates, u => u.Final && u.Done == 40);
    }
}
