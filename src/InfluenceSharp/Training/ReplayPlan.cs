using InfluenceSharp.Data;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>
/// Everything that decides an SGD run apart from the initial weights and the data: which examples
/// each optimiser step sees and in which order (a seeded shuffle per epoch), the augmentation draws of
/// every example at every step, and the learning rate, momentum and weight decay of every step. The
/// trainer trains by it and a replay (<see cref="SgdReplay"/>) follows it, so a replay with the same
/// example weights takes the same steps bit for bit (on the same machine and thread count).
/// </summary>
public sealed class ReplayPlan
{
    private readonly int[][] orders;
    private readonly byte[][]? draws;
    private readonly double[] learningRates;

    private ReplayPlan(TrainOptions o, int trainCount)
    {
        Options = o; TrainCount = trainCount;
        StepsPerEpoch = o.StepsPerEpoch(trainCount);
        UsedPerEpoch = o.DropLast ? trainCount - trainCount % o.BatchSize : trainCount;
        Epochs = o.TotalSteps is { } budget ? (int)((budget + StepsPerEpoch - 1) / StepsPerEpoch) : o.Epochs;
        Steps = o.TotalSteps ?? Epochs * StepsPerEpoch;
        orders = new int[Epochs][];
        for (int e = 1; e <= Epochs; e++)
        {
            var rng = new Random(Seeds.Derive(o.Seed, Seeds.Shuffle, e));
            var order = Enumerable.Range(0, trainCount).ToArray();
            rng.Shuffle(order);
            orders[e - 1] = order;
        }
        learningRates = new double[Steps];
        for (long t = 0; t < Steps; t++) learningRates[t] = o.LrAt(t, StepsPerEpoch);
        if (o.Augment)
        {
            // One stream over the whole run, three draws per example in step order (crop row, crop column, flip).
            var augRng = new Random(Seeds.Derive(o.Seed, Seeds.Augmentation));
            draws = new byte[Steps][];
            for (long t = 0; t < Steps; t++)
            {
                var d = new byte[3 * BatchLength(t)];
                for (int i = 0; i < d.Length; i += 3)
                {
                    d[i] = (byte)augRng.Next(2 * Augmentation.Padding + 1);
                    d[i + 1] = (byte)augRng.Next(2 * Augmentation.Padding + 1);
                    d[i + 2] = (byte)augRng.Next(2);
                }
                draws[t] = d;
            }
        }
    }

    /// <summary>The plan of minibatch SGD with <paramref name="options"/> over <paramref name="trainCount"/> examples.</summary>
    public static ReplayPlan For(TrainOptions options, int trainCount)
    {
        if (options.LbfgsTolerance is not null) throw new InfluenceSharpException("--lbfgs-tol: a full-batch L-BFGS run has no minibatch steps to replay");
        if (options.BatchSize < 1) throw new InfluenceSharpException($"--batch-size {options.BatchSize}: must be at least 1");
        if (options.Epochs < 1) throw new InfluenceSharpException($"--epochs {options.Epochs}: must be at least 1");
        if (trainCount < 1) throw new InfluenceSharpException("replay: the training set is empty");
        if (options.DropLast && trainCount < options.BatchSize)
            throw new InfluenceSharpException($"--drop-last: {trainCount} training examples make no complete batch of {options.BatchSize}");
        return new ReplayPlan(options, trainCount);
    }

    public TrainOptions Options { get; }
    public int TrainCount { get; }
    public long StepsPerEpoch { get; }
    /// <summary>Examples an epoch uses (all, or the complete batches only with drop-last).</summary>
    public int UsedPerEpoch { get; }
    /// <summary>Epochs started (the last may be partial under a step budget).</summary>
    public int Epochs { get; }
    /// <summary>Optimiser steps in all.</summary>
    public long Steps { get; }
    public double Momentum => Options.Momentum;
    public double WeightDecay => Options.WeightDecay;

    /// <summary>Learning rate of step <paramref name="t"/> (0-based).</summary>
    public double LearningRate(long t) => learningRates[t];

    /// <summary>The epoch (1-based) step <paramref name="t"/> belongs to.</summary>
    public int EpochOf(long t) => (int)(t / StepsPerEpoch) + 1;

    /// <summary>First step of <paramref name="epoch"/> (1-based); <see cref="Steps"/> past the end.</summary>
    public long FirstStep(int epoch) => Math.Min(Steps, (epoch - 1) * StepsPerEpoch);

    /// <summary>The shuffled order of <paramref name="epoch"/> (1-based).</summary>
    public ReadOnlySpan<int> Order(int epoch) => orders[epoch - 1];

    /// <summary>Number of examples in step <paramref name="t"/>'s batch (the loss's divisor).</summary>
    public int BatchLength(long t)
    {
        int start = (int)(t % StepsPerEpoch) * Options.BatchSize;
        return Math.Min(Options.BatchSize, UsedPerEpoch - start);
    }

    /// <summary>The training-set indices of step <paramref name="t"/>'s batch, in order.</summary>
    public ReadOnlySpan<int> Batch(long t)
    {
        if (t < 0 || t >= Steps) throw new ArgumentOutOfRangeException(nameof(t), $"step {t} of {Steps}");
        int start = (int)(t % StepsPerEpoch) * Options.BatchSize;
        return orders[EpochOf(t) - 1].AsSpan(start, BatchLength(t));
    }

    /// <summary>The model inputs of step <paramref name="t"/> (augmented as the run was), in <paramref name="dtype"/>.</summary>
    public Tensor Inputs(LabeledDataset data, long t, ScalarType dtype = ScalarType.Float32)
    {
        var x = data.Inputs(Batch(t));
        if (draws is not null) x = Augmentation.CropFlip(x, draws[t]);
        return x.dtype == dtype || !x.is_floating_point() ? x : x.to_type(dtype);   // token ids stay integers
    }

    /// <summary>What a run directory records for replay (replay.json): the schedule, per step.</summary>
    public ReplayRecord Record() => new()
    {
        Steps = Steps, Epochs = Epochs, BatchSize = Options.BatchSize, DropLast = Options.DropLast, Seed = Options.Seed,
        Momentum = Momentum, WeightDecay = WeightDecay, Augment = Options.Augment, LearningRates = learningRates,
    };
}

/// <summary>The replay record of a run directory (replay.json, next to the initial weights in
/// replay-init.safetensors): the per-step schedule and how the data order is derived.</summary>
public sealed record ReplayRecord
{
    public const string FileName = "replay.json";
    public const string InitFileName = "replay-init.safetensors";

    public string Format { get; init; } = "influencesharp-replay/1";
    /// <summary>How each epoch's order is drawn: a Fisher–Yates shuffle (System.Random.Shuffle) of
    /// 0..n−1 seeded with Seeds.Derive(seed, 0x5F1E, epoch); augmentation draws come from one stream seeded
    /// with Seeds.Derive(seed, 0xA06), three per example in step order.</summary>
    public string Order { get; init; } = CurrentOrder;
    /// <summary>The derivation this library replays; runs that record another were shuffled otherwise.</summary>
    public const string CurrentOrder = "shuffle(derive(seed,0x5F1E,epoch)); augmentation stream derive(seed,0xA06)";
    public long Steps { get; init; }
    public int Epochs { get; init; }
    public int BatchSize { get; init; }
    public bool DropLast { get; init; }
    public int Seed { get; init; }
    public double Momentum { get; init; }
    public double WeightDecay { get; init; }
    public bool Augment { get; init; }
    public double[] LearningRates { get; init; } = Array.Empty<double>();

    public static string PathIn(string runDir) => Path.Combine(runDir, FileName);

    public void Write(string runDir) => Json.WriteFile(PathIn(runDir), this);
}
