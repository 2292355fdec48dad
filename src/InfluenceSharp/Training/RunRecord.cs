using InfluenceSharp.Models;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Training;

/// <summary>
/// run.json, the record of a training run: what produced it and which checkpoints make it. The
/// trainer writes it (atomically) when training starts, with <see cref="Complete"/> false, and again
/// after every epoch with the checkpoints done so far; the last update sets <see cref="Complete"/>.
/// Readers go by this record, not by the epoch-* files that happen to be in the directory.
/// </summary>
public sealed record RunRecord
{
    public const string FileName = "run.json";

    public required ModelSpec Model { get; init; }
    public required TrainOptions Training { get; init; }
    public string? DataSource { get; init; }
    public required string DataFingerprint { get; init; }
    public int TrainCount { get; init; }
    /// <summary>Checkpoint files (relative to the run directory) of the epochs done, in order.</summary>
    public string[] Checkpoints { get; init; } = Array.Empty<string>();
    public List<EpochMetrics> History { get; init; } = new();
    /// <summary>Parameters of the classifier head left freshly initialised because the init file's
    /// tensors had another shape (another class count); null when none.</summary>
    public string[]? InitSkipped { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
    /// <summary>False while training; true once every epoch is done. Null in records written by
    /// versions before this field: such a run is complete when every listed checkpoint exists.</summary>
    public bool? Complete { get; init; }

    public static string PathIn(string runDir) => System.IO.Path.Combine(runDir, FileName);

    /// <summary>The record of a run directory, or null when it has none.</summary>
    public static RunRecord? TryRead(string runDir) =>
        File.Exists(PathIn(runDir)) ? Json.ReadFile<RunRecord>(PathIn(runDir)) : null;

    public void Write(string runDir) => Json.WriteFile(PathIn(runDir), this);

    /// <summary>Listed checkpoints whose weights or sidecar file is missing.</summary>
    public List<string> MissingIn(string runDir) => Checkpoints
        .Where(c => !File.Exists(System.IO.Path.Combine(runDir, c)) || !File.Exists(Checkpoint.SidecarPath(System.IO.Path.Combine(runDir, c))))
        .ToList();

    /// <summary>Complete: marked so, or (older records) every listed checkpoint is there.</summary>
    public bool IsCompleteIn(string runDir) => (Complete ?? true) && Checkpoints.Length > 0 && MissingIn(runDir).Count == 0;

    /// <summary>Why the run is incomplete (for messages), or null when it is complete.</summary>
    public string? IncompleteReason(string runDir)
    {
        var missing = MissingIn(runDir);
        if (missing.Count > 0)
            return $"run.json lists {string.Join(", ", missing.Take(4))}{(missing.Count > 4 ? $" (+{missing.Count - 4})" : "")} but the file or its .json sidecar is missing";
        if (Complete == false)
            return $"training stopped after {Checkpoints.Length} of {Training.Epochs} epochs (run.json: complete = false)";
        if (Checkpoints.Length == 0) return "run.json lists no checkpoints";
        return null;
    }
}
