using InfluenceSharp.Data;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Commands;

/// <summary>A training run as the attribution commands see it: its checkpoints (ordered by epoch),
/// the last one's model, and the exact training data rebuilt from the sidecar.</summary>
internal sealed class RunContext
{
    private RunContext(string dir, List<Checkpoint> checkpoints, RunData data)
    {
        Dir = dir; Checkpoints = checkpoints; Data = data;
        ClassNames = data.Train.ClassNamesOrIndices;
    }

    public string Dir { get; }
    public List<Checkpoint> Checkpoints { get; }
    public Checkpoint Last => Checkpoints[^1];
    public RunData Data { get; }
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Methods already built for this run (fitted factors, stored features), by name and
    /// settings, so that one process never fits the same thing twice.</summary>
    internal Dictionary<string, Methods.IAttributionMethod> Methods { get; } = new();

    /// <summary>--run RUN_DIR (all checkpoints) or a single checkpoint file.</summary>
    public static RunContext Load(string path, string? dataOverride)
    {
        List<Checkpoint> list;
        string dir;
        if (Directory.Exists(path) || File.Exists(path)) ReadLocks.Run(path);
        if (Directory.Exists(path)) { list = Checkpoint.List(path); dir = path; }
        else if (File.Exists(path)) { list = new List<Checkpoint> { Checkpoint.Open(path) }; dir = Path.GetDirectoryName(Path.GetFullPath(path))!; }
        else throw new InfluenceSharpException($"--run {path}: no such run directory or checkpoint file");
        var fps = list.Select(c => c.Info.DataFingerprint).Distinct().ToList();
        if (fps.Count > 1) throw new InfluenceSharpException($"{path}: checkpoints were trained on different data ({string.Join(", ", fps)})");
        var context = new RunContext(dir, list, RunData.For(list[^1], dataOverride));
        context.WarnIfPoorlyTrained();
        return context;
    }

    /// <summary>Whether this command line was given --quiet (set by <see cref="CommandLine.ComputeOptions.Apply"/>).</summary>
    internal static readonly AsyncLocal<bool> Quiet = new();

    /// <summary>How well the run trained, from its checkpoints' metrics (null when they have none).</summary>
    public TrainingHealth? Health
    {
        get
        {
            var history = Checkpoints.Select(c => c.Info.Metrics).OfType<EpochMetrics>().ToList();
            return history.Count == Checkpoints.Count
                ? TrainingHealth.Assess(history, Data.Train.NumClasses, converged: Last.Info.Training?.LbfgsTolerance is not null) : null;
        }
    }

    /// <summary>Attribution of an under-trained or unstably trained model is unreliable: a warning on
    /// stderr saying what to do (not with --quiet).</summary>
    void WarnIfPoorlyTrained()
    {
        if (Quiet.Value || Health is not { Advice: { } advice } h) return;
        Console.Error.WriteLine($"warning: {Dir}: {advice} ({h.Describe()})");
    }

    /// <summary>The last checkpoint's predicted class for every training example.</summary>
    public int[] PredictedTrainLabels()
    {
        var model = Last.LoadModel();
        var pred = new int[Data.Train.Count];
        using (no_grad())
        {
            var all = Enumerable.Range(0, pred.Length).ToArray();
            for (int b = 0; b < pred.Length; b += 1000)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(1000, pred.Length - b));
                var p = model.forward(Data.Train.Inputs(span)).argmax(1).to(ScalarType.Int32).data<int>().ToArray();
                p.CopyTo(pred, b);
            }
        }
        return pred;
    }
}
