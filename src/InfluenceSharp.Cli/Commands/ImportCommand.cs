using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence import`: a run directory from weights trained elsewhere.</summary>
public static class ImportCommand
{
    public static Command Command()
    {
        var model = Opt.Model(required: true);
        var widths = Opt.IntList("--widths", "mlp hidden widths, comma separated", new[] { 128 }, 1, 65536);
        var weights = Opt.Str("--weights", "weights files, oldest first, comma separated: .safetensors (PyTorch names; with or without a sidecar) or PyTorch state dicts (.pt/.pth/.bin, torch.save(model.state_dict()))", "FILE,...", required: true);
        var lr = Opt.PositiveDoubleList("--lr", "TracIn step size of each checkpoint (the learning rate around it): one for all, or one per file [default: 1]");
        var data = Opt.Str("--data", $"the data the weights were trained on: {Opt.DataSpecs}", "SPEC", required: true);
        var trainCount = Opt.OptionalInt("--train-count", "the weights were trained on a class-balanced subset of N examples (as `train --train-count N`) [default: all]", 1);
        var outDir = Opt.Out("run directory to write: epoch-NNNN.safetensors + .json sidecars, run.json", required: true);
        var overwrite = Opt.Flag("--overwrite", "replace the checkpoints (and results) of an earlier run in --out");
        var compute = new ComputeOptions();
        var cmd = new Command("import", "make a run directory from weights trained elsewhere (PyTorch or another tool), so that every command can read it")
        {
            model, widths, weights, lr, data, trainCount, outDir, overwrite,
        };
        var readers = new DataReaderOptions();
        readers.AddTo(cmd);
        compute.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            var files = Opt.ValueIfValid(r, weights)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var steps = Opt.ValueIfValid(r, lr);
            if (files is not null && steps is { Length: > 0 } && steps.Length != 1 && steps.Length != files.Length)
                r.AddError($"--lr: give one step size, or one per --weights file ({files.Length}), not {steps.Length}");
        });
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            var files = p.GetValue(weights)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            var steps = p.GetValue(lr) is { Length: > 0 } given ? given : new[] { 1.0 };
            var split = DataSource.Load(p.GetValue(data)!, readers.Read(p), quiet ? null : new ConsoleProgress());
            var train = split.Train;
            if (p.GetValue(trainCount) is int n)
            {
                if (n > train.Count) throw new UsageException($"--train-count {n}: the data set has only {train.Count} training examples");
                DataCommands.CheckBalancedCount("--train-count", n, train);
                train = train.Subset(DataSource.BalancedSubset(train, n, 0));
            }
            var spec = ModelSpec.For(p.GetValue(model)!, train.Channels, train.Height, train.Width, train.NumClasses, p.GetValue(widths));
            string outPath = p.GetValue(outDir)!;
            var cps = RunImport.Import(outPath, spec, files, steps, train, split.Test, split.Source, 0, p.GetValue(overwrite),
                CommandSupport.DataInputs(p.GetValue(data)!, readers.Read(p)));
            if (split.Scaling is { } scaling) Json.WriteFile(Path.Combine(outPath, FeatureScaling.FileName), scaling);
            if (!quiet) Console.Error.WriteLine($"model: {spec.Describe()}; data: {split.Source} ({train.Count} train)");
            foreach (var c in cps)
                Console.WriteLine($"epoch-{c.Info.Epoch:D4}: {c.Info.ImportedFrom} (step size {c.Info.LearningRate}), train accuracy {100 * c.Info.Metrics!.TrainAccuracy:F2}%, test accuracy {100 * c.Info.Metrics.TestAccuracy:F2}%");
            Console.WriteLine($"run: {outPath}");
            return 0;
        });
        return cmd;
    }
}
