using System.Diagnostics;
using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence demo`, the README's main command: on the embedded data, train SmallCnn with 10%
/// of labels corrupted, find them with several methods, explain a few test predictions, write the
/// report. A finished training run in the same directory with the same settings is reused.</summary>
public static class DemoCommand
{
    public static string DefaultMethods => MethodFactory.Defaults(MethodRole.Demo);

    public static Command Command()
    {
        var outDir = Opt.Str("--out", "output directory (the run in OUT/run, the report in OUT/report.html)", "DIR", fallback: "runs/demo");
        var data = Opt.FreshData();
        var epochs = Opt.Int("--epochs", "training epochs", 6, 1, 10000);
        var methods = Opt.Methods(DefaultMethods, MethodFactory.Names, single: false);
        var overwrite = Opt.Flag("--overwrite", "replace another run in OUT/run (one with other settings) instead of refusing");
        var readers = new DataReaderOptions();
        var compute = new ComputeOptions();
        var cmd = new Command("demo", "the whole pipeline on the embedded data: train SmallCnn with 10% of labels corrupted, detect them, explain three test predictions, write OUT/report.html")
        {
            outDir, data, epochs, methods, overwrite,
        };
        readers.AddTo(cmd);
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            return Run(p.GetValue(outDir)!, p.GetValue(data)!, readers.Read(p), p.GetValue(epochs), p.GetValue(methods)!, p.GetValue(overwrite), quiet);
        });
        return cmd;
    }

    static int Run(string outDir, string dataSpec, DataOptions readerOptions, int epochs, string[] methods, bool overwrite, bool quiet)
    {
        var stages = new Profiler();
        var wall = Stopwatch.StartNew();
        string runDir = Path.Combine(outDir, "run");
        var split = stages.Time("Load Data", () => DataSource.Load(dataSpec, readerOptions, quiet ? null : new ConsoleProgress()));
        var (labels, record) = LabelCorruption.Corrupt(split.Train.Labels, split.Train.NumClasses, 0.1, seed: 0);
        var train = split.Train.WithLabels(labels);
        var spec = ModelSpec.For(train.IsFlat ? "tabular-mlp" : "smallcnn", train.Channels, train.Height, train.Width, train.NumClasses);
        var options = new TrainOptions { Epochs = epochs, BatchSize = 128, LearningRate = 0.05, Seed = 0 };
        if (!quiet) Console.Error.WriteLine($"InfluenceSharp demo: {spec.Describe()} on {split.Source} ({train.Count} training images, {record.Indices.Length} labels corrupted), {epochs} epochs");

        using (stages.Stage("Train"))
        {
            var state = Existing(runDir, spec, options, train.Fingerprint());
            if (state == RunState.Finished) { if (!quiet) Console.Error.WriteLine($"reusing the finished training run in {runDir}"); }
            else
            {
                // An interrupted demo run is resumed; another run in OUT/run is refused unless --overwrite.
                var existing = state == RunState.Interrupted && !overwrite ? ExistingRun.Resume : overwrite ? ExistingRun.Overwrite : ExistingRun.Refuse;
                if (existing == ExistingRun.Resume && !quiet) Console.Error.WriteLine($"resuming the interrupted training run in {runDir}");
                if (existing == ExistingRun.Overwrite) Checkpoint.RefuseInputsDeletedByOverwrite(runDir, CommandSupport.DataInputs(dataSpec, readerOptions));
                new Trainer(options, quiet ? null : new ConsoleProgress()).Train(spec, train, split.Test, runDir, record, split.Source, existing);
            }
        }
        var run = RunContext.Load(runDir, split.Source);
        Console.WriteLine($"test accuracy of the last checkpoint: {run.Last.Info.Metrics?.TestAccuracy:P2}");

        var profiler = new Profiler();
        List<DetectCommand.MethodDetection> detection;
        using (stages.Stage("Detect Mislabeled"))
            detection = DetectCommand.Detect(run, methods, new MethodSettings(), Path.Combine(runDir, "detect"), 24, profiler, quiet);
        AtomicFile.WriteAllText(Path.Combine(runDir, "detect", "profile-detect.txt"), profiler.Table());
        Console.WriteLine();
        DetectCommand.PrintTable(detection, run);

        using (stages.Stage("Explain"))
        {
            var p = new Profiler();
            var (queries, captions) = ExplainCommand.FromIndices(run, "test", new[] { 0, 1, 2 });
            ExplainCommand.Explain(run, methods[0], new MethodSettings(), queries, captions, 8, Path.Combine(runDir, "explain"), p, quiet: true);
            AtomicFile.WriteAllText(Path.Combine(runDir, "explain", "profile-explain.txt"), p.Table());
        }
        string reportPath = Path.Combine(outDir, "report.html");
        using (stages.Stage("Report"))
        {
            AtomicFile.WriteAllText(Path.Combine(runDir, "profile-demo.txt"), stages.Table());
            ReportCommand.Write(runDir, reportPath);
        }
        if (!quiet)
        {
            Console.Error.WriteLine();
            Console.Error.Write(stages.Table());
        }
        Console.WriteLine($"report: {Path.GetFullPath(reportPath)}  ({wall.Elapsed.TotalSeconds:F0} s in all)");
        return 0;
    }

    enum RunState { None, Finished, Interrupted }

    /// <summary>Whether OUT/run holds this demo's run, finished or interrupted (same settings), or not.</summary>
    static RunState Existing(string runDir, ModelSpec spec, TrainOptions options, string fingerprint)
    {
        try
        {
            if (RunRecord.TryRead(runDir) is not { } m) return RunState.None;
            if (Json.Serialize(m.Model) != Json.Serialize(spec) || m.Training != options || m.DataFingerprint != fingerprint) return RunState.None;
            return m.IsCompleteIn(runDir) && m.Checkpoints.Length == options.Epochs ? RunState.Finished : RunState.Interrupted;
        }
        catch (InfluenceSharpException) { return RunState.None; }
    }
}
