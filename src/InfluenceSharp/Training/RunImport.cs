using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Training;

/// <summary>
/// Makes a run directory from weights trained elsewhere (PyTorch, another tool): one checkpoint per
/// weights file, in order, each with the step size TracIn weights it by, the data fingerprint and
/// the run record, so that every command that reads a run works on it.
/// </summary>
public static class RunImport
{
    /// <param name="runDir">The run directory to write (locked while writing).</param>
    /// <param name="spec">The architecture the weights are for.</param>
    /// <param name="weights">Weights files (safetensors or PyTorch state dicts), oldest first.</param>
    /// <param name="stepSizes">TracIn's η per checkpoint (the learning rate around it): one per file, or
    /// one for all.</param>
    /// <param name="train">The training data the weights were trained on.</param>
    /// <param name="test">Evaluated for the record's metrics when given.</param>
    /// <param name="dataSource">The data spec recorded, so later commands rebuild the data.</param>
    /// <param name="trainingSeed">The seed recorded in the run's options (it chooses a --train-count subset).</param>
    /// <param name="overwrite">Replace an earlier run in <paramref name="runDir"/>.</param>
    /// <param name="otherInputs">Other files the caller read for this import ((option, path), e.g. the
    /// data): like the weights, refused when overwriting <paramref name="runDir"/> would delete them.</param>
    public static List<Checkpoint> Import(string runDir, ModelSpec spec, IReadOnlyList<string> weights, IReadOnlyList<double> stepSizes,
        LabeledDataset train, LabeledDataset? test, string dataSource, int trainingSeed = 0, bool overwrite = false,
        IEnumerable<(string Option, string Path)>? otherInputs = null)
    {
        if (weights.Count == 0) throw new InfluenceSharpException("--weights: give at least one weights file");
        if (stepSizes.Count != 1 && stepSizes.Count != weights.Count)
            throw new InfluenceSharpException($"--lr: give one step size, or one per weights file ({weights.Count}), not {stepSizes.Count}");
        foreach (var lr in stepSizes)
            if (!(lr > 0) || double.IsInfinity(lr)) throw new InfluenceSharpException($"--lr {lr}: step sizes must be positive");
        foreach (var w in weights)
            if (!File.Exists(w)) throw new InfluenceSharpException($"--weights {w}: file not found");
        // Every weights file is read and checked (shapes, finite values) before the run directory is
        // touched: a bad file leaves an earlier run there as it was.
        foreach (var w in weights)
        {
            using var probe = spec.Create();
            InitWeights.Apply(probe, w, strictHead: true);
        }
        using var runLock = DirectoryLock.Acquire(runDir, "import");
        OutputLock.CleanStaleTemps(runDir);
        // An input among the old run's files would be deleted before it is read (or, for the data,
        // lost to the user): refuse it while nothing is deleted yet.
        if (overwrite)
            Checkpoint.RefuseInputsDeletedByOverwrite(runDir, weights.Select(w => ("--weights", w)).Concat(otherInputs ?? Array.Empty<(string, string)>()));
        Checkpoint.PrepareRunDirectory(runDir, overwrite);
        string fingerprint = train.Fingerprint();
        var options = new TrainOptions
        {
            Epochs = weights.Count, LearningRate = stepSizes.Max(), Momentum = 0, WeightDecay = 0, Seed = trainingSeed,
        };
        var record = new RunRecord
        {
            Model = spec, Training = options, DataSource = dataSource, DataFingerprint = fingerprint, TrainCount = train.Count, Complete = false,
        };
        record.Write(runDir);
        var checkpoints = new List<Checkpoint>();
        var history = new List<EpochMetrics>();
        try
        {
        for (int i = 0; i < weights.Count; i++)
        {
            var sw = System.Diagnostics.Stopwatch.StartNew();
            using var model = spec.Create();
            // The weights are the model: every tensor must fit, the head included.
            var init = InitWeights.Apply(model, weights[i], strictHead: true);
            model.eval();
            var (trainLoss, trainAcc) = Trainer.Evaluate(model, train);
            var (testLoss, testAcc) = test is null ? (double.NaN, double.NaN) : Trainer.Evaluate(model, test);
            var metrics = new EpochMetrics(trainLoss, trainAcc, testLoss, testAcc, sw.Elapsed.TotalSeconds);
            history.Add(metrics);
            var info = new CheckpointInfo
            {
                Epoch = i + 1, LearningRate = stepSizes.Count == 1 ? stepSizes[0] : stepSizes[i], Model = spec,
                DataFingerprint = fingerprint, DataSource = dataSource, TrainCount = train.Count, Training = options, Metrics = metrics,
                ImportedFrom = Path.GetFullPath(weights[i]), ImportedHash = init.Hash,
            };
            checkpoints.Add(Checkpoint.Save(model, Path.Combine(runDir, $"epoch-{i + 1:D4}.safetensors"), info));
        }
        }
        catch
        {
            // A failed import leaves no half-made run: the record and the checkpoints written so far go.
            foreach (var f in Directory.GetFiles(runDir, "epoch-*.*").Append(RunRecord.PathIn(runDir)))
                try { File.Delete(f); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
        record = record with
        {
            Checkpoints = checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), History = history, Complete = true,
        };
        record.Write(runDir);
        return checkpoints;
    }
}
