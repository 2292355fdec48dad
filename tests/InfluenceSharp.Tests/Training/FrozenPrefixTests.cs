using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Training;

/// <summary>Training with the frozen prefix's outputs cached (<c>--cache-frozen-prefix</c>) is
/// training without it: the same weights up to float rounding, a bit-identical resume, and
/// retrainings (removal) that read the cache.</summary>
public class FrozenPrefixTests
{
    const int Seed = 11;
    // Trains layer4.1 and fc of torchvision's resnet18 at 32x32 (layer4 then sees 1x1 maps).
    static readonly string[] Freeze = { "conv1", "bn1", "layer1", "layer2", "layer3", "layer4.0" };
    static readonly ModelSpec Spec = ModelSpec.For("resnet18", 3, 32, 32, 4);
    // Weights after 8 SGD steps agree to this (float32; the cached rows were computed in other batches).
    const double Tolerance = 1e-4;

    /// <summary>40 seeded random 3x32x32 images in a memory-mapped file in <paramref name="dir"/>;
    /// the training set is 32 of them in a shuffled order (example i is not image i), the test set the rest.</summary>
    static (ImageDataset Train, ImageDataset Test) Data(string dir)
    {
        const int n = 40, size = 3 * 32 * 32;
        var rng = new Random(Seed);
        var px = new byte[n * size];
        rng.NextBytes(px);
        string path = Path.Combine(dir, "pixels.u8");
        File.WriteAllBytes(path, px);
        var store = new FilePixelStore(path, 0, size, size, n);
        var labels = Enumerable.Range(0, n).Select(_ => rng.Next(4)).ToArray();
        var all = new ImageDataset("random", store, null, labels, 3, 32, 32, 4);
        var order = Enumerable.Range(0, n).ToArray();
        rng.Shuffle(order);
        return (all.Subset(order.Take(32).ToArray(), "train"), all.Subset(order.Skip(32).ToArray(), "test"));
    }

    static TrainOptions Options(bool cache, int epochs = 2) => new()
    {
        Epochs = epochs, BatchSize = 8, LearningRate = 0.05, Seed = Seed, DropLast = true, Freeze = Freeze, CacheFrozenPrefix = cache,
    };

    static double MaxDifference(nn.Module a, nn.Module b)
    {
        var sb = b.state_dict();
        double max = 0;
        foreach (var (name, t) in a.state_dict())
        {
            if (!t.is_floating_point()) continue;
            max = Math.Max(max, (t - sb[name]).abs().max().item<float>());
        }
        return max;
    }

    [Fact]
    public void StagesComposeToTheForwardPass()
    {
        torch.manual_seed(Seed);
        using var model = (ResNet18)Spec.Create();
        Assert.Equal(new[] { "input", "stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1", "layer4.0", "layer4.1", "head" }, model.Stages.Select(s => s.Name));
        // The ImageNet network (asymmetric padding, layer4.2, the input transform) on grey images.
        using var imagenet = ResNet18.ImageNet(1, 32, 32, 4);
        Assert.Equal("layer4.2", imagenet.Stages[^2].Name);
        foreach (var (m, channels) in new[] { (model, 3), (imagenet, 1) })
        {
            m.eval();
            var x = torch.randn(3, channels, 32, 32, generator: new Generator(Seed));
            using var _ = no_grad();
            var full = m.forward(x);
            int n = m.Stages.Count;
            for (int k = 0; k <= n; k++)
                Assert.True(full.allclose(m.ForwardStages(m.ForwardStages(x, 0, k), k, n), 0, 0), $"{m.StageSignature}: split at {k}");
        }
    }

    [Fact]
    public void TrainingWithTheCacheEqualsTrainingWithoutIt()
    {
        using var dir = new TempDir();
        var (train, test) = Data(dir.Path);
        // The whole training set and a removal (5 examples dropped): both index the cache by their images.
        foreach (var data in new[] { train, train.Subset(Enumerable.Range(0, 32).Where(i => i % 7 != 3).ToArray()) })
        {
            var plain = new Trainer(Options(false)).Train(Spec, data, test, null);
            var cachedTrainer = new Trainer(Options(true));
            var cached = cachedTrainer.Train(Spec, data, test, null);
            var prefix = cachedTrainer.LastPrefix!;
            Assert.Equal(9, prefix.Split);   // input, stem, layer1.0 ... layer4.0
            Assert.Equal(new long[] { 512, 1, 1 }, prefix.RowShape);
            Assert.Equal(dir.Path, Path.GetDirectoryName(prefix.Path));
            double diff = MaxDifference(plain.Model, cached.Model);
            Assert.True(diff <= Tolerance, $"{data.Count} examples: weights differ by {diff:G3}");
            Assert.Equal(plain.History[^1].TestAccuracy, cached.History[^1].TestAccuracy);
            Assert.Equal(plain.History[^1].TrainLoss, cached.History[^1].TrainLoss, 4);
        }
        // One cache for both (the same frozen weights and images), computed once.
        Assert.Single(Directory.GetFiles(dir.Path, "prefix-*.f32"));
        var again = new Trainer(Options(true));
        again.Train(Spec, train, null, null);
        Assert.False(again.LastPrefix!.Computed);
    }

    /// <summary>Stops training (as a kill would) when epoch <c>stopAt</c> starts.</summary>
    sealed class StopAt(int stopAt, int epochs) : IProgress<ProgressUpdate>
    {
        public void Report(ProgressUpdate value)
        {
            if (value.Label == $"epoch {stopAt}/{epochs}") throw new OperationCanceledException("stopped");
        }
    }

    [Fact]
    public void ResumeWithTheCacheIsBitIdentical()
    {
        using var dir = new TempDir();
        var (train, test) = Data(dir.Path);
        string straight = dir.File("straight"), resumed = dir.File("resumed");
        var a = new Trainer(Options(true, epochs: 3)).Train(Spec, train, test, straight);
        Assert.Throws<OperationCanceledException>(() => new Trainer(Options(true, epochs: 3), new StopAt(2, 3)).Train(Spec, train, test, resumed));
        var b = new Trainer(Options(true, epochs: 3)).Train(Spec, train, test, resumed, existing: ExistingRun.Resume);
        Assert.Equal(0, MaxDifference(a.Model, b.Model));
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "epoch-0003.safetensors")), File.ReadAllBytes(Path.Combine(resumed, "epoch-0003.safetensors")));
        // The run records the option (its retrainings inherit it); a resume without it is refused.
        Assert.True(RunRecord.TryRead(straight)!.Training.CacheFrozenPrefix);
        var e = Assert.Throws<InfluenceSharpException>(() => new Trainer(Options(false, epochs: 3)).Train(Spec, train, test, resumed, existing: ExistingRun.Resume));
        Assert.Contains("cannot resume", e.Message);
    }

    [Fact]
    public void RemovalRetrainsThroughTheCache()
    {
        using var dir = new TempDir();
        var (train, test) = Data(dir.Path);
        var scores = torch.randn(8, 32, generator: new Generator(Seed));
        var removal = new RemovalOptions { Ks = new[] { 5 }, TrainSeeds = new[] { 0 } };
        var plain = Removal.Run(scores, Spec, Options(false, epochs: 1), train, test, test, removal);
        Assert.Empty(Directory.GetFiles(dir.Path, "prefix-*.f32"));
        var cached = Removal.Run(scores, Spec, Options(true, epochs: 1), train, test, test, removal);
        Assert.Single(Directory.GetFiles(dir.Path, "prefix-*.f32"));
        Assert.Equal(plain.Baseline[0].QueryLoss, cached.Baseline[0].QueryLoss, 4);
        foreach (var s in plain.Settings)
        {
            var c = cached.Get(s.Kind, s.K);
            Assert.Equal(s.Removed, c.Removed);
            Assert.Equal(s.PerSeed[0].QueryLoss, c.PerSeed[0].QueryLoss, 4);
            Assert.Equal(s.PerSeed[0].TestAccuracy, c.PerSeed[0].TestAccuracy);
        }
    }

    [Fact]
    public void WhatCannotBeCachedIsRefusedSayingWhy()
    {
        using var dir = new TempDir();
        var (train, _) = Data(dir.Path);
        var e = Assert.Throws<InfluenceSharpException>(() => new Trainer(Options(true) with { Augment = true }).Train(Spec, train, null, null));
        Assert.Contains("--augment", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => new Trainer(Options(true) with { Freeze = new[] { "layer1" } }).Train(Spec, train, null, null));
        Assert.Contains("not a leading part", e.Message);
        Assert.Contains("stem", e.Message);
        var mlp = ModelSpec.For("mlp", 3, 32, 32, 4);
        e = Assert.Throws<InfluenceSharpException>(() => new Trainer(Options(true) with { Freeze = new[] { "fc1" } }).Train(mlp, train, null, null));
        Assert.Contains("cannot be split", e.Message);
    }
}
