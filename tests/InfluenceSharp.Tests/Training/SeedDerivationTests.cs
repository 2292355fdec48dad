using InfluenceSharp.Data;
using InfluenceSharp.Formats;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Models;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

public class SeedDerivationTests
{
    /// <summary>The data order and the augmentation draws come from the one seed derivation, as the
    /// run's replay.json says, so that anyone can redo them from the record: each epoch's order is a
    /// System.Random shuffle seeded with Seeds.Derive(seed, Seeds.Shuffle, epoch), the crop/flip draws
    /// one stream seeded with Seeds.Derive(seed, Seeds.Augmentation).</summary>
    [Fact]
    public void ReplayOrderAndAugmentationComeFromTheSeedDerivation()
    {
        var o = new TrainOptions { Epochs = 3, BatchSize = 8, Seed = 11, Augment = true };
        const int n = 20;
        var plan = ReplayPlan.For(o, n);
        for (int e = 1; e <= 3; e++)
        {
            var order = Enumerable.Range(0, n).ToArray();
            new Random(Seeds.Derive(11, Seeds.Shuffle, e)).Shuffle(order);
            Assert.Equal(order, plan.Order(e).ToArray());
        }
        Assert.Equal(ReplayRecord.CurrentOrder, plan.Record().Order);

        // Step 0's inputs: its batch, cropped and flipped with the first 3 × 8 draws of the stream.
        var images = Embedded.Split.Train.Subset(Enumerable.Range(0, n).ToArray());
        var rng = new Random(Seeds.Derive(11, Seeds.Augmentation));
        var draws = new byte[3 * 8];
        for (int i = 0; i < draws.Length; i += 3)
        {
            draws[i] = (byte)rng.Next(2 * Augmentation.Padding + 1);
            draws[i + 1] = (byte)rng.Next(2 * Augmentation.Padding + 1);
            draws[i + 2] = (byte)rng.Next(2);
        }
        var expected = Augmentation.CropFlip(images.Inputs(plan.Batch(0)), draws);
        Assert.True(plan.Inputs(images, 0).allclose(expected, rtol: 0, atol: 0));
    }

    /// <summary>A run whose replay.json records another order derivation (trained by an earlier
    /// version) is not replayed with this version's order: unrolled refuses it and says why.</summary>
    [Fact]
    public void UnrolledRefusesARunThatRecordsAnotherOrderDerivation()
    {
        using var dir = new TempDir();
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 40).ToArray());
        new Trainer(new TrainOptions { Epochs = 1, BatchSize = 20, Seed = 2 }).Train(ModelSpec.For("logreg", 1, 28, 28, 10), train, null, dir.Path);
        UnrolledAttribution.FromRun(dir.Path, train).Dispose();   // as trained: accepted
        string path = ReplayRecord.PathIn(dir.Path);
        var record = Json.ReadFile<ReplayRecord>(path);
        Json.WriteFile(path, record with { Order = "shuffle(seed*1000003+epoch); augmentation stream seed*7919+17" });
        var e = Assert.Throws<InfluenceSharpException>(() => UnrolledAttribution.FromRun(dir.Path, train));
        Assert.Contains("seed*1000003", e.Message);
        Assert.Contains("train the run again", e.Message);
    }
}
