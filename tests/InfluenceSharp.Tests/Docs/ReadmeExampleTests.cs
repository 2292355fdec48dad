using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Docs;

/// <summary>The README's library example, kept compiling and running (smaller data and epochs).</summary>
public class ReadmeExampleTests
{
    [Fact]
    public void LibraryExampleRuns()
    {
        using var dir = new TempDir();
        var data = Embedded.Split;
        var (labels, record) = LabelCorruption.Corrupt(data.Train.Labels, 10, fraction: 0.1, seed: 0);
        var train = data.Train.WithLabels(labels).Subset(Enumerable.Range(0, 600).ToArray());
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10);
        var finals = new System.Collections.Concurrent.ConcurrentQueue<ProgressUpdate>();
        var progress = new Progress<ProgressUpdate>(u => { if (u.Final) finals.Enqueue(u); });
        var run = new Trainer(new TrainOptions { Epochs = 2 }, progress).Train(spec, train, data.Test, dir.Path);

        var model = run.Model;
        var task = new ClassificationTask(QueryMeasurement.Loss);
        var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Progress = progress }).Fit(train, Path.Combine(dir.Path, "factors"))!;
        IAttributionMethod ekfac = new InfluenceFunction(model, task, factors, new ScoreOptions { Progress = progress });
        double[] self = ekfac.SelfInfluence(train);
        var queries = data.Test.Subset(new[] { 0, 1, 2 });
        var top = new StreamingTopK(queries.Count, k: 10);
        ekfac.Pairwise(queries, train, (offset, block) => top.Add(block, offset));

        IAttributionMethod tracin = new TracInCPFast(TracInCheckpoint.FromRun(dir.Path), options: new TracInFastOptions());
        Assert.Equal(600, self.Length);
        Assert.Equal(10, top.Result().Proponents[0].Length);
        Assert.Equal(600, tracin.SelfInfluence(train).Length);
        Assert.True(self.All(double.IsFinite));

        InfluenceSharp.Reporting.PngWriter.Save(Path.Combine(dir.Path, "query.png"), data.Test.Pixels.AsSpan(0, 784), 28, 28, 1);
        var image = ImageFile.Load(Path.Combine(dir.Path, "query.png"), channels: 1);
        Assert.Equal(data.Test.Pixels.AsSpan(0, 784).ToArray(), image.Pixels);
        // Progress<T> posts to the thread pool: wait (briefly) for the epochs' final updates.
        for (int i = 0; i < 100 && finals.Count(u => u.Label.StartsWith("epoch")) < 2; i++) Thread.Sleep(20);
        Assert.Equal(2, finals.Count(u => u.Label.StartsWith("epoch")));
    }
}
