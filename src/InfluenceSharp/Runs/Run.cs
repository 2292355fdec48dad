using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Runs;

/// <summary>A training run as attribution sees it: its checkpoints (ordered by epoch), the last
/// one's model, and the exact training data rebuilt from the checkpoints' sidecar. Opened from a run
/// directory (all its checkpoints) or from a single checkpoint file.</summary>
public sealed class Run
{
    private Run(string dir, List<Checkpoint> checkpoints, RunData data)
    {
        Dir = dir; Checkpoints = checkpoints; Data = data;
        ClassNames = data.Train.ClassNamesOrIndices;
    }

    public string Dir { get; }
    public List<Checkpoint> Checkpoints { get; }
    public Checkpoint Last => Checkpoints[^1];
    public RunData Data { get; }
    public IReadOnlyList<string> ClassNames { get; }

    /// <summary>Called with every further run directory or checkpoint file read on this run's behalf
    /// (TRAK's ensemble members from other runs), so that a caller can lock it for reading.</summary>
    public Action<string>? BeforeReading { get; init; }

    /// <summary>Opens a run directory (all checkpoints) or a single checkpoint file.</summary>
    /// <param name="path">RUN_DIR written by training, or one checkpoint file.</param>
    /// <param name="dataOverride">where the training data is, if not where the run recorded it (a data spec).</param>
    /// <param name="beforeReading">see <see cref="BeforeReading"/>; also called with <paramref name="path"/> first.</param>
    public static Run Open(string path, string? dataOverride = null, Action<string>? beforeReading = null)
    {
        var (dir, list) = Read(path, beforeReading);
        return new Run(dir, list, RunData.For(list[^1], dataOverride)) { BeforeReading = beforeReading };
    }

    /// <summary>Opens a run trained from data built in code (<see cref="Trainer.Train"/>
    /// with an in-memory data set), which the run cannot rebuild from its record: the caller gives the
    /// data. <paramref name="train"/> must be the data the run was trained on, labels as trained (its
    /// example count and content fingerprint are checked against the run's record).</summary>
    /// <param name="path">RUN_DIR written by training, or one checkpoint file.</param>
    /// <param name="train">the training data, as trained on.</param>
    /// <param name="test">held-out data (queries by default); null = none (an empty set).</param>
    /// <param name="beforeReading">see <see cref="BeforeReading"/>; also called with <paramref name="path"/> first.</param>
    public static Run Open(string path, Data.LabeledDataset train, Data.LabeledDataset? test = null, Action<string>? beforeReading = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        var (dir, list) = Read(path, beforeReading);
        return new Run(dir, list, RunData.Given(list[^1], train, test)) { BeforeReading = beforeReading };
    }

    static (string Dir, List<Checkpoint> Checkpoints) Read(string path, Action<string>? beforeReading)
    {
        List<Checkpoint> list;
        string dir;
        if (Directory.Exists(path) || File.Exists(path)) beforeReading?.Invoke(path);
        if (Directory.Exists(path)) { list = Checkpoint.List(path); dir = path; }
        else if (File.Exists(path)) { list = new List<Checkpoint> { Checkpoint.Open(path) }; dir = Path.GetDirectoryName(Path.GetFullPath(path))!; }
        else throw new InfluenceSharpException($"--run {path}: no such run directory or checkpoint file");
        var fps = list.Select(c => c.Info.DataFingerprint).Distinct().ToList();
        if (fps.Count > 1) throw new InfluenceSharpException($"{path}: checkpoints were trained on different data ({string.Join(", ", fps)})");
        return (dir, list);
    }

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

    /// <summary>The last checkpoint's predicted class for every training example.</summary>
    public int[] PredictedTrainLabels()
    {
        using var model = Last.LoadModel();
        var pred = new int[Data.Train.Count];
        // Batches of 256: at 1,000 a ResNet-18's activations were hundreds of MB, the largest
        // allocation of a detection run over a 32×32 image folder.
        const int batch = 256;
        using (no_grad())
        {
            var all = Enumerable.Range(0, pred.Length).ToArray();
            for (int b = 0; b < pred.Length; b += batch)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(batch, pred.Length - b));
                var p = model.forward(Data.Train.Inputs(span)).argmax(1).to(ScalarType.Int32).data<int>().ToArray();
                p.CopyTo(pred, b);
            }
        }
        return pred;
    }
}
