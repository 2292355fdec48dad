using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

public static class TrainCommand
{
    public const string Help = """
        influence train --out DIR [options]

          --out DIR            run directory (checkpoints epoch-NNNN.safetensors + .json, corruption.json)
          --data SPEC          embedded | auto | fashion-mnist | cifar10:DIR | DIR    (default: auto =
                               full Fashion-MNIST when installed, else the embedded subset)
          --model NAME         logreg | mlp | smallcnn | resnet9                        (default smallcnn)
          --widths 128,64      hidden widths for mlp                                    (default 128)
          --train-count N      use a class-balanced subset of N training examples
          --epochs N           (default 5)          --batch-size N   (default 128)
          --lr X               (default 0.05)       --momentum X     (default 0.9)
          --weight-decay X     (default 5e-4)       --schedule constant|onecycle (default constant)
          --peak-epoch X       one-cycle peak (default epochs/5)
          --seed N             (default 0)          --augment        random crop + flip (CIFAR)
          --corrupt F          corrupt a fraction F of the training labels (seeded by --corrupt-seed, default 0)
          --overwrite          replace the checkpoints (and results) of an earlier run in --out
        """;

    public static int Run(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(Help); return 0; }
        string outDir = a.Required("out");
        string dataSpec = a.Str("data", "auto");
        string arch = a.Str("model", "smallcnn");
        int[] widths = a.IntList("widths", new[] { 128 });
        int trainCount = a.Int("train-count", 0);
        var options = new TrainOptions
        {
            Epochs = a.Int("epochs", 5), BatchSize = a.Int("batch-size", 128), LearningRate = a.Double("lr", 0.05),
            Momentum = a.Double("momentum", 0.9), WeightDecay = a.Double("weight-decay", 5e-4),
            Schedule = a.Str("schedule", "constant") switch
            {
                "constant" => LrSchedule.Constant, "onecycle" => LrSchedule.OneCycle,
                var s => throw new UsageException($"--schedule {s}: choose constant or onecycle"),
            },
            PeakEpoch = a.OptionalDouble("peak-epoch"), Seed = a.Int("seed", 0), Augment = a.Flag("augment"),
        };
        double corrupt = a.Double("corrupt", 0);
        int corruptSeed = a.Int("corrupt-seed", 0);
        bool overwrite = a.Flag("overwrite");
        a.RejectUnknown();
        Checkpoint.PrepareRunDirectory(outDir, overwrite);

        var split = DataSource.Load(dataSpec);
        var train = split.Train;
        if (trainCount > 0)
        {
            if (trainCount > train.Count) throw new UsageException($"--train-count {trainCount}: the data set has only {train.Count} training examples");
            train = train.Subset(DataSource.BalancedSubset(train, trainCount, options.Seed));
        }
        CorruptionRecord? record = null;
        if (corrupt > 0)
        {
            var (labels, rec) = LabelCorruption.Corrupt(train.Labels, train.NumClasses, corrupt, corruptSeed);
            train = train.WithLabels(labels);
            record = rec;
        }
        var spec = ModelSpec.For(arch, train.Channels, train.Height, train.Width, train.NumClasses, widths);
        Console.Error.WriteLine($"data: {split.Source} ({train.Count} train, {split.Test.Count} test){(record is null ? "" : $", {record.Indices.Length} labels corrupted")}");
        Console.Error.WriteLine($"model: {spec.Describe()}, {options.Epochs} epochs, batch {options.BatchSize}, lr {options.LearningRate} ({options.Schedule})");
        var result = new Trainer(options, new ConsoleProgress()).Train(spec, train, split.Test, outDir, record, split.Source);
        var last = result.History[^1];
        Json.WriteFile(Path.Combine(outDir, "run.json"), new RunManifest(spec, options, split.Source, train.Fingerprint(), train.Count,
            result.Checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), result.History, LibraryInfo.Version));
        Console.WriteLine($"final: train accuracy {100 * last.TrainAccuracy:F2}%, test accuracy {100 * last.TestAccuracy:F2}%; checkpoints in {outDir}");
        return 0;
    }
}

/// <summary>run.json: what produced a run directory.</summary>
public sealed record RunManifest(ModelSpec Model, TrainOptions Training, string DataSource, string DataFingerprint, int TrainCount,
    string[] Checkpoints, List<EpochMetrics> History, string LibraryVersion);
