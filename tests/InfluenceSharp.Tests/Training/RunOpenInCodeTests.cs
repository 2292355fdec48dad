using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Runs;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

public class RunOpenInCodeTests
{
    /// <summary>Trains a run, in a fresh directory, from a subset the run cannot rebuild (another
    /// subset seed than the training seed, with flipped labels), and calls <paramref name="check"/>.</summary>
    static void WithRunTrainedInCode(int count, Action<string, LabeledDataset, LabeledDataset, LabeledDataset, CorruptionRecord> check)
    {
        var data = DataSource.Load("embedded");
        var clean = data.Train.Subset(DataSource.BalancedSubset(data.Train, count, seed: 5));
        var (labels, record) = LabelCorruption.Corrupt(clean.Labels, clean.NumClasses, fraction: 0.2, seed: 3);
        var train = clean.WithLabels(labels);
        string dir = Path.Combine(Path.GetTempPath(), $"influencesharp-runopen-{Guid.NewGuid():N}");
        try
        {
            new Trainer(new TrainOptions { Epochs = 1, Seed = 0 }).Train(ModelSpec.For("mlp", 1, 28, 28, 10), train, data.Test, dir, record);
            check(dir, clean, train, data.Test, record);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Opened from its record alone, such a run is refused with a message that says why and
    /// how to open it, not only that the corruption record does not fit.</summary>
    [Fact]
    public void ARunTrainedFromDataBuiltInCodeSaysHowToOpenIt() => WithRunTrainedInCode(200, (dir, _, _, _, _) =>
    {
        var e = Assert.Throws<InfluenceSharpException>(() => Run.Open(dir));
        Assert.Contains("records no data source", e.Message);
        Assert.Contains("--data", e.Message);
    });

    /// <summary>Run.Open with the data sets the run was trained on opens it (checkpoints, data, the
    /// corruption record) and methods build from it by name; other data (labels not as trained, or
    /// fewer examples) is refused with a message that says what differs.</summary>
    [Fact]
    public void ARunTrainedFromDataBuiltInCodeOpensWithItsDataAndRefusesOtherData() => WithRunTrainedInCode(120, (dir, clean, train, test, record) =>
    {
        var run = Run.Open(dir, train, test);
        Assert.Same(train, run.Data.Train);
        Assert.Same(test, run.Data.Test);
        Assert.Equal(record.Indices, run.Data.Corruption!.Indices);
        var self = AttributionMethods.Create("identity", run).SelfInfluence(run.Data.Train);
        Assert.Equal(train.Count, self.Length);
        Assert.All(self, v => Assert.True(double.IsFinite(v)));
        Assert.Contains(self, v => v != 0);
        Assert.Equal(0, Run.Open(dir, train).Data.Test.Count);   // no test data: an empty test set

        var unflipped = Assert.Throws<InfluenceSharpException>(() => Run.Open(dir, clean, test));
        Assert.Contains("fingerprint", unflipped.Message);
        Assert.Contains("labels", unflipped.Message);
        var fewer = Assert.Throws<InfluenceSharpException>(() => Run.Open(dir, train.Subset(Enumerable.Range(0, 100).ToArray()), test));
        Assert.Contains("was trained on 120 examples", fewer.Message);
        Assert.Contains("has 100", fewer.Message);
    });
}
