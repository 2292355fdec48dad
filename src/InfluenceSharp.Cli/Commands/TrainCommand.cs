using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

public static class TrainCommand
{
    public static Command Command()
    {
        var outDir = Opt.Out("run directory: checkpoints epoch-NNNN.safetensors + .json, run.json, corruption.json", required: true);
        var data = Opt.FreshData();
        var readers = new DataReaderOptions();
        var model = Opt.Model();
        var init = Opt.Str("--init", "start from these weights: a .safetensors file (ours or PyTorch's) or a PyTorch state dict (.pt/.pth/.bin); the classifier head starts fresh when the class count differs", "FILE");
        var pretrained = Opt.Choice("--pretrained", "start resnet18 from ImageNet weights: the network of the Microsoft.ML.DnnImageFeaturizer.ResNet18 NuGet package (restored from your NuGet feeds at first use) exactly as its ONNX graph computes it, with the preprocessing its weights expect applied inside the model (printed, and recorded in the run)", "none", "none", "imagenet");
        var freeze = Opt.Str("--freeze", "keep the parameters with these name prefixes fixed (comma separated, e.g. conv1,bn1,layer1); attribution then tracks only the rest", "PREFIXES");
        var widths = Opt.IntList("--widths", "mlp hidden widths, comma separated; tabular-mlp: its one hidden width; gpt: WIDTH,BLOCKS,HEADS [default: 128 for mlp, 64 for tabular-mlp, 64,2,4 for gpt]", null, 1, 65536);
        var trainCount = Opt.OptionalInt("--train-count", "use a class-balanced subset: N / classes examples of each class (N at least the number of classes) [default: all]", 1);
        var epochs = Opt.Int("--epochs", "training epochs", 5, 1, 100000);
        var batchSize = Opt.Int("--batch-size", "examples per batch", 128, 1);
        var lr = Opt.Double("--lr", "learning rate (the peak of a one-cycle schedule)", 0.05, 0, minOpen: true);
        var momentum = Opt.Double("--momentum", "SGD momentum", 0.9, 0, max: 1, maxOpen: true);
        var weightDecay = Opt.Double("--weight-decay", "L2 weight decay", 5e-4, 0);
        var lbfgsTol = Opt.OptionalDouble("--lbfgs-tol", "train by full-batch L-BFGS (float64) on mean cross-entropy + (weight-decay/2)|theta|^2 until the gradient's max-norm is at most X, instead of SGD (one checkpoint; --epochs, --lr, --momentum, --batch-size's minibatches unused): the converged protocol for convex models (logreg); evaluate lds retrains the same way", 0, minOpen: true);
        var schedule = Opt.Choice("--schedule", "learning-rate schedule", "constant", "constant", "onecycle");
        var peakEpoch = Opt.OptionalDouble("--peak-epoch", "one-cycle peak, in epochs [default: epochs/5]", 0, minOpen: true);
        var seed = Opt.Int("--seed", "initialisation, shuffling and subset seed", 0, 0);
        var augment = Opt.Flag("--augment", "random crop + horizontal flip (CIFAR)");
        var dropLast = Opt.Flag("--drop-last", "skip each epoch's last, incomplete minibatch (PyTorch's drop_last; for BatchNorm networks, whose running statistics a batch of a few examples corrupts); retrainings (evaluate, curate) do the same");
        var cachePrefix = Opt.Flag("--cache-frozen-prefix", "compute the frozen leading layers' outputs (--freeze from the input on) once per image, in a file beside the data's cache, and train only the rest: the same training up to float rounding; recorded, so retrainings (evaluate, curate) use it too (image data, resnet18 or resnet9, no --augment)");
        var corrupt = Opt.Double("--corrupt", "corrupt this fraction of the training labels (recorded in corruption.json)", 0, 0, max: 1);
        var corruptSeed = Opt.Int("--corrupt-seed", "seed of the label corruption", 0, 0);
        var overwrite = Opt.Flag("--overwrite", "replace the checkpoints (and results) of an earlier run in --out");
        var resume = Opt.Flag("--resume", "continue an interrupted run in --out (same options) from its last complete epoch");
        var compute = new ComputeOptions();
        var cmd = new Command("train", "train a model on a data set, a checkpoint every epoch (SGD with momentum and weight decay)")
        {
            outDir, data, model, widths, init, pretrained, freeze, trainCount, epochs, batchSize, lr, momentum, weightDecay, lbfgsTol, schedule, peakEpoch, seed, augment, dropLast,
            cachePrefix, corrupt, corruptSeed, overwrite, resume,
        };
        readers.AddTo(cmd);
        compute.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            if (r.GetResult(init) is { Implicit: false } && Opt.ValueIfValid(r, init) is { Length: > 0 } initFile)
            {
                if (Directory.Exists(initFile)) r.AddError($"--init {initFile}: is a directory; give a weights file (.safetensors, or a PyTorch state dict .pt/.pth/.bin)");
                else if (!File.Exists(initFile)) r.AddError($"--init {initFile}: no such file");
            }
            if (r.GetResult(overwrite) is { Implicit: false } && r.GetResult(resume) is { Implicit: false })
                r.AddError("--overwrite and --resume: give one of them");
            if (r.GetResult(pretrained) is { Implicit: false } && Opt.ValueIfValid(r, pretrained) == "imagenet")
            {
                if (r.GetResult(init) is { Implicit: false }) r.AddError("--pretrained and --init: give one of them");
                if (Opt.ValueIfValid(r, model) is { } m && m != "resnet18") r.AddError($"--pretrained imagenet: only with --model resnet18 (not {m})");
            }
        });
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            var options = new TrainOptions
            {
                Epochs = p.GetValue(epochs), BatchSize = p.GetValue(batchSize), LearningRate = p.GetValue(lr),
                Momentum = p.GetValue(momentum), WeightDecay = p.GetValue(weightDecay), LbfgsTolerance = p.GetValue(lbfgsTol),
                Schedule = p.GetValue(schedule) == "onecycle" ? LrSchedule.OneCycle : LrSchedule.Constant,
                PeakEpoch = p.GetValue(peakEpoch), Seed = p.GetValue(seed), Augment = p.GetValue(augment), DropLast = p.GetValue(dropLast), CacheFrozenPrefix = p.GetValue(cachePrefix),
                InitFile = p.GetValue(init),
                Freeze = p.GetValue(freeze)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is { Length: > 0 } f ? f : null,
            };
            // No --model: flat feature data (csv:, tensors: [N, D]) get tabular-mlp, images smallcnn.
            string? arch = p.GetResult(model) is { Implicit: false } ? p.GetValue(model) : null;
            return Run(p.GetValue(outDir)!, p.GetValue(data)!, readers.Read(p), arch, p.GetResult(widths) is { Implicit: false } ? p.GetValue(widths) : null, p.GetValue(trainCount) ?? 0, options,
                p.GetValue(pretrained) == "imagenet",
                p.GetValue(corrupt), p.GetValue(corruptSeed),
                p.GetValue(resume) ? ExistingRun.Resume : p.GetValue(overwrite) ? ExistingRun.Overwrite : ExistingRun.Refuse, quiet);
        });
        return cmd;
    }

    static int Run(string outDir, string dataSpec, DataOptions readerOptions, string? arch, int[]? widths, int trainCount, TrainOptions options,
        bool imagenet, double corrupt, int corruptSeed, ExistingRun existing, bool quiet)
    {
        // The data and --train-count are checked before the run directory is touched.
        var split = DataSource.Load(dataSpec, readerOptions, quiet ? null : new ConsoleProgress());
        bool text = split.Train is TextDataset or TextClassDataset;
        arch ??= text ? "gpt" : split.Train.IsFlat ? "tabular-mlp" : "smallcnn";
        if (text && arch != "gpt" && !CustomModel.IsCustom(arch))
            throw new UsageException($"--model {arch}: the data ({split.Source}) are token sequences; choose gpt");
        if (!text && arch == "gpt")
            throw new UsageException($"--model gpt: takes text data (--data text:FILE or text-classes:FILE), not {split.Source}");
        if (split.Train.IsFlat && !text && arch is not ("logreg" or "mlp" or "tabular-mlp") && !CustomModel.IsCustom(arch))
            throw new UsageException($"--model {arch}: the data ({split.Source}) are flat feature vectors of {split.Train.Width} values; choose logreg, mlp or tabular-mlp");
        var train = split.Train;
        if (trainCount > 0)
        {
            if (trainCount > train.Count) throw new UsageException($"--train-count {trainCount}: the data set has only {train.Count} training examples");
            DataCommands.CheckBalancedCount("--train-count", trainCount, train);
            train = train.Subset(DataSource.BalancedSubset(train, trainCount, options.Seed));
        }
        CorruptionRecord? record = null;
        if (corrupt > 0)
        {
            var (labels, rec) = LabelCorruption.Corrupt(train.Labels, train.NumClasses, corrupt, corruptSeed);
            train = train.WithLabels(labels);
            record = rec;
        }
        // gpt on labelled texts is a classifier (its encoder mean-pooled into a class head).
        var spec = train is TextClassDataset tc && arch == "gpt" ? ModelSpec.ForTextClasses(tc.Vocabulary, tc.SequenceLength, tc.NumClasses, widths)
            : ModelSpec.For(arch, train.Channels, train.Height, train.Width, train.NumClasses, widths);
        // The ImageNet network as its weights were trained, with their input transform (converted once
        // per input shape and normalisation, then cached).
        if (imagenet)
        {
            var weights = Pretrained.ForData(train, quiet ? null : new ConsoleProgress());
            spec = spec with { Architecture = ModelSpec.ImageNetResNet18, Preprocessing = weights.Preprocessing };
            options = options with { InitFile = weights.Path };
        }
        if (!quiet) Console.Error.WriteLine($"data: {split.Source} ({train.Count} train, {split.Test.Count} test){(record is null ? "" : $", {record.Indices.Length} labels corrupted")}");
        if (!quiet) Console.Error.WriteLine($"model: {spec.Describe()}, " + (options.LbfgsTolerance is { } lt
                ? $"full-batch L-BFGS (L2 {options.WeightDecay}) to gradient max-norm {lt}" : $"{options.Epochs} epochs, batch {options.BatchSize}, lr {options.LearningRate} ({options.Schedule})")
            + (options.InitFile is null ? "" : $", from {options.InitFile}") + (options.Freeze is null ? "" : $", frozen {string.Join(",", options.Freeze)}"));
        if (!quiet && spec.Preprocessing is { } pre)
            Console.Error.WriteLine($"pretrained: ImageNet ResNet-18 ({Pretrained.PackageName} {Pretrained.PackageVersion}, all 22 convolutions, the original padding); its inputs: {pre}");
        // The trainer locks --out, refuses (or overwrites, or resumes) an earlier run there, and keeps run.json.
        if (existing == ExistingRun.Overwrite) Checkpoint.RefuseInputsDeletedByOverwrite(outDir, CommandSupport.DataInputs(dataSpec, readerOptions));
        var trainer = new Trainer(options, quiet ? null : new ConsoleProgress());
        var result = trainer.Train(spec, train, split.Test, outDir, record, split.Source, existing);
        if (!quiet && trainer.LastPrefix is { } fp)
            Console.Error.WriteLine($"frozen prefix: {fp.Split} stages cached per image [{string.Join("x", fp.RowShape)}] in {fp.Path}{(fp.Computed ? "" : " (was there)")}");
        if (split.Scaling is { } scaling) Json.WriteFile(Path.Combine(outDir, FeatureScaling.FileName), scaling);
        if (!quiet && trainer.LastLbfgs is { } lb)
            Console.Error.WriteLine($"L-BFGS: {lb.Iterations} iterations, objective {lb.Objective:G8}, gradient max-norm {lb.MaxGradient:G3}");
        var last = result.History[^1];
        if (!quiet && RunRecord.TryRead(outDir)?.InitSkipped is { Length: > 0 } skipped)
            Console.Error.WriteLine($"note: {string.Join(", ", skipped)} started fresh " + (imagenet ? "(the ImageNet backbone has no classifier)" : "(the init file's head is for another number of classes)"));
        Console.WriteLine($"final: train accuracy {100 * last.TrainAccuracy:F2}%, test accuracy {100 * last.TestAccuracy:F2}%; checkpoints in {outDir}");
        if (TrainingHealth.Assess(result.History, train.NumClasses, converged: options.LbfgsTolerance is not null) is { } health)
        {
            Console.WriteLine($"health: {health.Describe()}");
            if (health.Advice is { } advice) Console.WriteLine($"health: {advice}");
        }
        return 0;
    }
}

