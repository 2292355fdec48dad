using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

public enum LrSchedule { Constant, OneCycle }

/// <summary>Training settings. OneCycle is the triangular schedule of the TRAK / Kronfluence CIFAR
/// examples: linear warm-up from 0 to the peak at <see cref="PeakEpoch"/>, then linear decay to 0.</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.05;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 5e-4;
    public LrSchedule Schedule { get; init; } = LrSchedule.Constant;
    /// <summary>Epoch of the one-cycle peak; null means epochs / 5 (at least one step in).</summary>
    public double? PeakEpoch { get; init; }
    public int Seed { get; init; }
    /// <summary>Random crop (padding 4) and horizontal flip; meant for CIFAR-10.</summary>
    public bool Augment { get; init; }

    /// <summary>Learning rate at optimisation step t of totalSteps.</summary>
    public double LrAt(long t, long stepsPerEpoch)
    {
        if (Schedule == LrSchedule.Constant) return LearningRate;
        double total = (double)Epochs * stepsPerEpoch;
        double peak = Math.Max(1, (PeakEpoch ?? Epochs / 5.0) * stepsPerEpoch);
        double f = t <= peak ? t / peak : Math.Max(0, (total - t) / Math.Max(1, total - peak));
        return LearningRate * f;
    }
}

/// <summary>What a training run produced.</summary>
public sealed record TrainResult(nn.Module<Tensor, Tensor> Model, List<Checkpoint> Checkpoints, List<EpochMetrics> History);

/// <summary>Minibatch SGD (momentum, weight decay) with a checkpoint after every epoch. The same
/// seed gives bit-identical weights on the same machine (seeded init and shuffling, no dropout).</summary>
public sealed class Trainer
{
    /// <param name="options">The training settings (recorded in every checkpoint's sidecar).</param>
    /// <param name="progress">Receives each epoch's progress; its final update's
    /// <see cref="ProgressUpdate.Suffix"/> holds the epoch's metrics. Null: silent.</param>
    public Trainer(TrainOptions options, IProgress<ProgressUpdate>? progress = null) { Options = options; Progress = progress; }

    public TrainOptions Options { get; }

    /// <summary>Where progress goes (null: nowhere). Not part of <see cref="TrainOptions"/>, which is
    /// recorded in checkpoints and compared.</summary>
    public IProgress<ProgressUpdate>? Progress { get; }

    /// <summary>Trains a fresh model of <paramref name="spec"/> (seeded by the options).</summary>
    /// <param name="spec">The architecture.</param>
    /// <param name="train">The training set.</param>
    /// <param name="test">Evaluated after every epoch when given (metrics in the sidecars).</param>
    /// <param name="runDir">where checkpoints go (epoch-NNNN.safetensors + .json); null for none.</param>
    /// <param name="corruption">The label corruption applied to <paramref name="train"/>, saved as corruption.json.</param>
    /// <param name="dataSource">The data spec recorded in the sidecars, so later commands can rebuild the data.</param>
    public TrainResult Train(ModelSpec spec, ImageDataset train, ImageDataset? test, string? runDir,
        CorruptionRecord? corruption = null, string? dataSource = null)
    {
        var o = Options;
        if (o.Epochs < 1) throw new InfluenceSharpException($"--epochs {o.Epochs}: must be at least 1");
        if (o.BatchSize < 1) throw new InfluenceSharpException($"--batch-size {o.BatchSize}: must be at least 1");
        if (!(o.LearningRate > 0)) throw new InfluenceSharpException($"--lr {o.LearningRate}: must be positive");
        torch.manual_seed(o.Seed);
        var model = spec.Create();
        using var opt = new Sgd(model.parameters(), o.Momentum, o.WeightDecay);
        string fingerprint = train.Fingerprint();
        string? corruptionFile = null;
        if (runDir is not null)
        {
            Directory.CreateDirectory(runDir);
            if (corruption is not null)
            {
                corruptionFile = "corruption.json";
                Json.WriteFile(Path.Combine(runDir, corruptionFile), corruption);
            }
        }
        long stepsPerEpoch = (train.Count + o.BatchSize - 1) / o.BatchSize;
        var history = new List<EpochMetrics>();
        var checkpoints = new List<Checkpoint>();
        long step = 0;
        var augRng = new Random(unchecked(o.Seed * 7919 + 17));
        for (int epoch = 1; epoch <= o.Epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            model.train();
            var rng = new Random(unchecked(o.Seed * 1_000_003 + epoch));
            var order = Enumerable.Range(0, train.Count).ToArray();
            rng.Shuffle(order);
            double lossSum = 0, lrSum = 0; long correct = 0, seen = 0;
            using var bar = ProgressReporter.Start(Progress, $"epoch {epoch}/{o.Epochs}", train.Count, "ex");
            for (int b = 0; b < order.Length; b += o.BatchSize)
            {
                using var scope = NewDisposeScope();
                int len = Math.Min(o.BatchSize, order.Length - b);
                var idx = order.AsSpan(b, len);
                var x = train.Inputs(idx);
                if (o.Augment) x = Augmentation.CropFlip(x, 4, augRng);
                var y = train.Targets(idx);
                double lr = o.LrAt(step, stepsPerEpoch);
                lrSum += lr;
                opt.ZeroGrad();
                var logits = model.forward(x);
                var loss = nn.functional.cross_entropy(logits, y);
                loss.backward();
                opt.Step(lr);
                step++;
                double l = loss.item<float>();
                if (double.IsNaN(l) || double.IsInfinity(l))
                    throw new InfluenceSharpException($"training diverged: loss is {l} at epoch {epoch}, step {step} (lower --lr?)");
                lossSum += l * len;
                correct += logits.argmax(1).eq(y).sum().item<long>();
                seen += len;
                bar?.Update(seen, $"loss {lossSum / seen:F4} acc {100.0 * correct / seen:F1}%");
            }
            var (testLoss, testAcc) = test is null ? (double.NaN, double.NaN) : Evaluate(model, test);
            var m = new EpochMetrics(lossSum / seen, (double)correct / seen, testLoss, testAcc, sw.Elapsed.TotalSeconds);
            history.Add(m);
            bar?.Complete($"train loss {m.TrainLoss:F4} acc {100 * m.TrainAccuracy:F2}%"
                + (test is null ? "" : $", test loss {testLoss:F4} acc {100 * testAcc:F2}%"));
            if (runDir is not null)
            {
                var info = new CheckpointInfo
                {
                    Epoch = epoch, Step = step, LearningRate = lrSum / stepsPerEpoch, Model = spec,
                    DataFingerprint = fingerprint, DataSource = dataSource, TrainCount = train.Count,
                    CorruptionFile = corruptionFile, CorruptedCount = corruption?.Indices.Length ?? 0,
                    Training = o, Metrics = m,
                };
                checkpoints.Add(Checkpoint.Save(model, Path.Combine(runDir, $"epoch-{epoch:D4}.safetensors"), info));
            }
        }
        model.eval();
        return new TrainResult(model, checkpoints, history);
    }

    /// <summary>Mean cross-entropy and accuracy of a model on a dataset (eval mode, no grad).</summary>
    public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, ImageDataset data, int batchSize = 1000)
    {
        bool wasTraining = model.training;
        model.eval();
        double lossSum = 0; long correct = 0;
        using (no_grad())
        {
            var all = Enumerable.Range(0, data.Count).ToArray();
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var idx = all.AsSpan(b, Math.Min(batchSize, data.Count - b));
                var logits = model.forward(data.Inputs(idx));
                var y = data.Targets(idx);
                lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).item<float>();
                correct += logits.argmax(1).eq(y).sum().item<long>();
            }
        }
        if (wasTraining) model.train();
        return (lossSum / data.Count, (double)correct / data.Count);
    }
}

/// <summary>Standard CIFAR augmentation: random crop after zero padding, and horizontal flip.</summary>
public static class Augmentation
{
    public static Tensor CropFlip(Tensor x, int pad, Random rng)
    {
        long n = x.shape[0], h = x.shape[2], w = x.shape[3];
        var padded = nn.functional.pad(x, new long[] { pad, pad, pad, pad });
        var outs = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            int dy = rng.Next(2 * pad + 1), dx = rng.Next(2 * pad + 1);
            var crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
            outs[i] = rng.Next(2) == 1 ? crop.flip(2) : crop;
        }
        return torch.stack(outs);
    }
}
