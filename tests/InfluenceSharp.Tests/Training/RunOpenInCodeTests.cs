using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Runs;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

public class RunOpenInCodeTests
{
    /// <summary>A run trained in code from a subset the run cannot rebuild (here: another subset seed
    /// than the training seed, with flipped labels) is refused with a message that says why and how to
    /// open it, not only that the corruption record does not fit.</summary>
    [Fact]
    public void ARunTrainedFromDataBuiltInCodeSaysHowToOpenIt()
    {
        var data = DataSource.Load("embedded");
        var clean = data.Train.Subset(DataSource.BalancedSubset(data.Train, 200, seed: 5));
        var (labels, record) = LabelCorruption.Corrupt(clean.Labels, clean.NumClasses, fraction: 0.2, seed: 3);
        var train = clean.WithLabels(labels);
        string dir = Path.Combine(Path.GetTempPath(), $"influencesharp-runopen-{Guid.NewGuid():N}");
        try
        {
            new Trainer(new TrainOptions { Epochs = 1, Seed = 0 }).Train(ModelSpec.For("mlp", 1, 28, 28, 10), train, data.Test, dir, record);
            var e = Assert.Throws<InfluenceSharpException>(() => Run.Open(dir));
            Assert.Contains("records no data source", e.Message);
            Assert.Contains("--data", e.Message);
        }
        finally { if (Directory.Exists(dir)) Directory.Delete(dir, recursive: true); }
    }
}
