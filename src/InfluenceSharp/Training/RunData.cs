using InfluenceSharp.Data;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Training;

/// <summary>The data a checkpoint was trained on, rebuilt from its sidecar: the same source, the
/// same class-balanced subset, the same corrupted labels, checked against the recorded fingerprint.</summary>
public sealed record RunData(LabeledDataset Train, LabeledDataset Test, CorruptionRecord? Corruption, string Source)
{
    /// <param name="checkpoint">The checkpoint whose sidecar names the data.</param>
    /// <param name="dataOverride">a --data spec to use instead of the sidecar's source (e.g. the same
    /// files in another place; reader options it does not give, such as imagefolder's size, are the
    /// recorded ones); the fingerprint must still match.</param>
    /// <param name="progress">Progress of reading the data (decoding an image folder).</param>
    public static RunData For(Checkpoint checkpoint, string? dataOverride = null, IProgress<Diagnostics.ProgressUpdate>? progress = null)
    {
        var info = checkpoint.Info;
        string spec = info.DataSource ?? "auto";
        if (dataOverride is not null)
            spec = info.DataSource is null ? dataOverride : DataSpec.Parse(dataOverride).Inherit(DataSpec.Parse(info.DataSource)).ToString();
        var split = DataSource.Load(spec, progress: progress);
        var train = split.Train;
        if (info.TrainCount > 0 && info.TrainCount < train.Count)
            train = train.Subset(DataSource.BalancedSubset(train, info.TrainCount, info.Training?.Seed ?? 0));
        CorruptionRecord? record = null;
        if (info.CorruptionFile is not null)
        {
            string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(checkpoint.WeightsPath))!, info.CorruptionFile);
            record = Json.ReadFile<CorruptionRecord>(path);
            RequireIntact(path, record, info.CorruptedCount);
            var labels = (int[])train.Labels.Clone();
            for (int t = 0; t < record.Indices.Length; t++)
            {
                int i = record.Indices[t];
                if (i < 0 || i >= labels.Length || labels[i] != record.TrueLabels[t])
                    throw new InfluenceSharpException($"{path}: corruption record does not fit the training data from '{spec}' (index {i})" +
                        (info.DataSource is null ? "; the run records no data source (trained from data built in code?): open it with the data it was trained on (Run.Open with the data sets, or its dataOverride; the command line's --data)" : ""));
                labels[i] = record.CorruptedLabels[t];
            }
            train = train.WithLabels(labels);
        }
        string fp = train.Fingerprint();
        if (fp != info.DataFingerprint)
            throw new InfluenceSharpException($"{checkpoint.WeightsPath}: was trained on data with fingerprint {info.DataFingerprint}, " +
                $"but --data {spec} gives {fp} ({train.Count} examples); pass the --data the model was trained on" +
                (info.DataSource is null ? " (the run records no data source: trained from data built in code? open it with Run.Open(dir, trainingData, testData))" : ""));
        return new RunData(train, split.Test, record, spec);
    }

    /// <summary>Data given by the caller for a checkpoint (a run trained from data built in code): the
    /// training set must have the example count and fingerprint the checkpoint recorded; the corruption
    /// record, if the run kept one, is read as it is (the given labels are already the trained ones).</summary>
    public static RunData Given(Checkpoint checkpoint, LabeledDataset train, LabeledDataset? test)
    {
        var info = checkpoint.Info;
        if (info.TrainCount > 0 && train.Count != info.TrainCount)
            throw new InfluenceSharpException($"{checkpoint.WeightsPath}: was trained on {info.TrainCount} examples, the training data given has {train.Count}; " +
                "pass the data the run was trained on");
        string fp = train.Fingerprint();
        if (fp != info.DataFingerprint)
            throw new InfluenceSharpException($"{checkpoint.WeightsPath}: was trained on data with fingerprint {info.DataFingerprint}, " +
                $"the training data given has {fp} ({train.Count} examples: other examples, another order or other labels); pass the data the run was trained on, with the labels it was trained with");
        CorruptionRecord? record = null;
        if (info.CorruptionFile is not null)
        {
            string path = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(checkpoint.WeightsPath))!, info.CorruptionFile);
            record = Json.ReadFile<CorruptionRecord>(path);
            RequireIntact(path, record, info.CorruptedCount);
        }
        return new RunData(train, test ?? train.Subset(Array.Empty<int>()), record, info.DataSource ?? "(given in code)");
    }

    /// <summary>A corruption record whose lists are missing, of unequal lengths or shorter than the
    /// count the checkpoint recorded is damaged: said so, rather than reported later as other data.</summary>
    static void RequireIntact(string path, CorruptionRecord record, int recordedCount)
    {
        string Damaged(string why) => $"{path}: damaged label-corruption record: {why}; restore the file from the run, or train the run again";
        if (record.Indices is null || record.TrueLabels is null || record.CorruptedLabels is null)
            throw new InfluenceSharpException(Damaged("it lacks the indices, true_labels or corrupted_labels list"));
        if (record.TrueLabels.Length != record.Indices.Length || record.CorruptedLabels.Length != record.Indices.Length)
            throw new InfluenceSharpException(Damaged($"its lists have different lengths ({record.Indices.Length} indices, {record.TrueLabels.Length} true labels, {record.CorruptedLabels.Length} corrupted labels)"));
        if (recordedCount > 0 && record.Indices.Length != recordedCount)
            throw new InfluenceSharpException(Damaged($"it lists {record.Indices.Length} corrupted labels, the checkpoint records {recordedCount}"));
    }
}
