using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>Metrics recorded at the end of an epoch.</summary>
public sealed record EpochMetrics(double TrainLoss, double TrainAccuracy, double TestLoss, double TestAccuracy, double Seconds);

/// <summary>The JSON sidecar stored beside each checkpoint's safetensors file.</summary>
public sealed record CheckpointInfo
{
    public string Format { get; init; } = "influencesharp-checkpoint/1";
    public int Epoch { get; init; }
    public long Step { get; init; }
    /// <summary>Mean learning rate used during this epoch: TracIn's step size η for this checkpoint.</summary>
    public double LearningRate { get; init; }
    public required ModelSpec Model { get; init; }
    public required string DataFingerprint { get; init; }
    public string? DataSource { get; init; }
    public int TrainCount { get; init; }
    /// <summary>File (relative to the run directory) holding the label-corruption record, if any.</summary>
    public string? CorruptionFile { get; init; }
    public int CorruptedCount { get; init; }
    public TrainOptions? Training { get; init; }
    public EpochMetrics? Metrics { get; init; }
    /// <summary>Parameters of the classifier head left freshly initialised because the init file's
    /// tensors had another shape (another class count); null when none.</summary>
    public string[]? InitSkipped { get; init; }
    /// <summary>The weights file this checkpoint was imported from (<c>influence import</c>), and its hash.</summary>
    public string? ImportedFrom { get; init; }
    public string? ImportedHash { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
    /// <summary>Checksum of the weights file (see <see cref="Checksum"/>), checked whenever
    /// the weights are loaded; null in a sidecar written before checksums were recorded (unverified).</summary>
    public string? Checksum { get; init; }
}

/// <summary>A checkpoint on disk: safetensors weights (PyTorch names) plus a JSON sidecar.</summary>
public sealed record Checkpoint(string WeightsPath, CheckpointInfo Info)
{
    public static string SidecarPath(string weightsPath) => Path.ChangeExtension(weightsPath, ".json");

    /// <summary>Hash of the weights file: identifies the checkpoint in manifests.</summary>
    public string Hash => HashFile(WeightsPath);

    public static string HashFile(string path) => Checksum.Sha256OfFile(path);

    /// <summary>Writes the model's state (parameters and buffers) and the sidecar, each atomically;
    /// the sidecar goes last so a checkpoint with a sidecar is always complete.</summary>
    public static Checkpoint Save(nn.Module model, string weightsPath, CheckpointInfo info)
    {
        var state = model.state_dict();
        string? sum = null;
        SafeTensors.Save(weightsPath, state, new Dictionary<string, string>
        {
            ["format"] = "pt", ["architecture"] = info.Model.Architecture, ["library"] = "InfluenceSharp " + info.LibraryVersion,
        }, s => sum = s);
        info = info with { Checksum = sum };
        Json.WriteFile(SidecarPath(weightsPath), info);
        return new Checkpoint(weightsPath, info);
    }

    /// <summary>Opens a checkpoint by its safetensors path (or its sidecar path).</summary>
    public static Checkpoint Open(string path)
    {
        string weights = path.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? Path.ChangeExtension(path, ".safetensors") : path;
        if (!File.Exists(weights)) throw new InfluenceSharpException($"{weights}: checkpoint file not found");
        string side = SidecarPath(weights);
        if (!File.Exists(side)) throw new InfluenceSharpException($"{side}: checkpoint sidecar not found (incomplete checkpoint?)");
        var info = Json.ReadFile<CheckpointInfo>(side);
        if (info.Model is null) throw new InfluenceSharpException($"{side}: checkpoint sidecar has no model spec");
        info.Model.Validate(side);
        return new Checkpoint(weights, info);
    }

    /// <summary>The checkpoints of a run directory, ordered by epoch: those its record (run.json)
    /// lists. An incomplete run (training stopped early, or a listed file missing) is refused with a
    /// message naming the run and what is missing, unless <paramref name="allowIncomplete"/>, which
    /// gives the listed checkpoints that are there. A directory without run.json (checkpoints put
    /// together by hand, or saved by PyTorch) gives every epoch-* checkpoint with a sidecar.</summary>
    public static List<Checkpoint> List(string runDir, bool allowIncomplete = false)
    {
        if (!Directory.Exists(runDir)) throw new InfluenceSharpException($"{runDir}: run directory not found");
        List<Checkpoint> list;
        if (RunRecord.TryRead(runDir) is { } record)
        {
            if (!allowIncomplete && record.IncompleteReason(runDir) is { } why)
                throw new InfluenceSharpException($"{runDir}: incomplete run: {why}; finish it (influence train --resume with the same options) or use a single checkpoint file");
            var missing = record.MissingIn(runDir);
            list = record.Checkpoints.Where(c => !missing.Contains(c)).Select(c => Open(Path.Combine(runDir, c))).OrderBy(c => c.Info.Epoch).ToList();
        }
        else
            list = Directory.GetFiles(runDir, "epoch-*.safetensors").Where(p => File.Exists(SidecarPath(p)))
                .Select(Open).OrderBy(c => c.Info.Epoch).ToList();
        if (list.Count == 0) throw new InfluenceSharpException($"{runDir}: no complete checkpoints (epoch-*.safetensors with .json sidecar)");
        return list;
    }

    /// <summary>The file holding the optimizer state (momentum buffers) after an epoch, kept so that
    /// an interrupted run resumes to the same weights.</summary>
    public static string OptimizerStatePath(string runDir, int epoch) => Path.Combine(runDir, $"optimizer-{epoch:D4}.safetensors");

    /// <summary>Makes a run directory ready for a new training run: refuses one that already holds
    /// checkpoints or a run record (they would mix with the new run's) unless <paramref name="overwrite"/>,
    /// in which case the old checkpoints and derived results are deleted. Call it under the run's lock.</summary>
    public static void PrepareRunDirectory(string runDir, bool overwrite)
    {
        var targets = OverwriteTargets(runDir);
        if (targets.Count == 0) return;
        if (!overwrite)
            throw new InfluenceSharpException($"--out {runDir}: already holds checkpoints of another run; choose another directory, pass --overwrite, or --resume to finish an interrupted run");
        foreach (var t in targets)
        {
            if (Directory.Exists(t) && !new DirectoryInfo(t).Attributes.HasFlag(FileAttributes.ReparsePoint)) Directory.Delete(t, recursive: true);
            else File.Delete(t);
        }
    }

    /// <summary>What <see cref="PrepareRunDirectory"/> with overwrite deletes in <paramref name="runDir"/>
    /// (files and folders, existing ones only): nothing when the directory holds no run.</summary>
    public static IReadOnlyList<string> OverwriteTargets(string runDir)
    {
        if (!Directory.Exists(runDir)) return Array.Empty<string>();
        var old = Directory.GetFiles(runDir, "epoch-*.*").Concat(Directory.GetFiles(runDir, "optimizer-*.safetensors")).ToList();
        if (old.Count == 0 && !File.Exists(RunRecord.PathIn(runDir))) return Array.Empty<string>();
        old.AddRange(new[] { "run.json", "corruption.json", Data.FeatureScaling.FileName, ReplayRecord.FileName, ReplayRecord.InitFileName }.Select(n => Path.Combine(runDir, n)).Where(File.Exists));
        old.AddRange(new[] { "store", "detect", "explain", "lds", "remove", "ensemble" }.Select(n => Path.Combine(runDir, n)).Where(Directory.Exists));
        return old;
    }

    /// <summary>Refuses, naming the option and the file, an input that overwriting
    /// <paramref name="runDir"/> would delete before (or while) the command reads it: a weights or
    /// data file among the old run's checkpoints or results (as named, or through a link).</summary>
    /// <param name="runDir">The run directory about to be overwritten.</param>
    /// <param name="inputs">(option, path) of every file or folder the command reads.</param>
    public static void RefuseInputsDeletedByOverwrite(string runDir, IEnumerable<(string Option, string Path)> inputs)
    {
        var targets = OverwriteTargets(runDir).Select(PathIdentity.NamedPath).ToList();
        if (targets.Count == 0) return;
        foreach (var (option, path) in inputs)
            if (PathIdentity.AmongDeleted(path, targets))
                throw new InfluenceSharpException($"{option} {path}: lies in {runDir}, whose old run --overwrite deletes before this command is done with it; copy the file out of the run directory first, or choose another --out");
    }

    /// <summary>Builds the architecture named in the sidecar and loads the weights into it, in eval
    /// mode (BatchNorm uses its running statistics), with the parameters the run froze marked as not
    /// requiring gradients (so that <see cref="Gradients.TrackedLayer.Find"/> leaves them out).</summary>
    public nn.Module<Tensor, Tensor> LoadModel()
    {
        var model = Info.Model.Create();
        LoadWeights(model, WeightsPath, Info.Checksum);
        // Parameters frozen in training stay so: attribution tracks only the trainable layers.
        InitWeights.Freeze(model, Info.Training?.Freeze);
        model.eval();
        // Attribution on a diverged model fails late and obscurely (e.g. sampling labels from NaN
        // probabilities): say so when loading.
        using (no_grad())
            foreach (var (name, t) in model.state_dict())
                if (t.is_floating_point() && !t.isfinite().all().item<bool>())
                    throw new InfluenceSharpException($"{WeightsPath}: the checkpoint has non-finite weights (NaN or infinity in '{name}'); training diverged: retrain, e.g. with a lower --lr");
        return model;
    }

    /// <summary>Loads a safetensors file (ours or one written by PyTorch for the same architecture)
    /// into a model, refusing missing, unexpected or wrongly shaped tensors with a message that names
    /// the file and the tensors.</summary>
    /// <param name="model">The model to load into.</param>
    /// <param name="path">The safetensors file.</param>
    /// <param name="checksum">The checksum its sidecar recorded (null: unchecked).</param>
    public static void LoadWeights(nn.Module model, string path, string? checksum = null)
    {
        using var file = SafeTensors.Load(path, checksum, SidecarPath(path));
        var state = model.state_dict();
        var missing = state.Keys.Where(k => !file.Tensors.ContainsKey(k)).ToList();
        var unexpected = file.Tensors.Keys.Where(k => !state.ContainsKey(k)).ToList();
        var wrong = state.Keys.Where(k => file.Tensors.ContainsKey(k) && !state[k].shape.SequenceEqual(file.Tensors[k].shape))
            .Select(k => $"{k}: file [{string.Join(",", file.Tensors[k].shape)}] vs model [{string.Join(",", state[k].shape)}]").ToList();
        if (missing.Count > 0 || unexpected.Count > 0 || wrong.Count > 0)
        {
            var parts = new List<string>();
            if (missing.Count > 0) parts.Add("missing " + string.Join(", ", missing.Take(6)) + (missing.Count > 6 ? $" (+{missing.Count - 6})" : ""));
            if (unexpected.Count > 0) parts.Add("unexpected " + string.Join(", ", unexpected.Take(6)) + (unexpected.Count > 6 ? $" (+{unexpected.Count - 6})" : ""));
            if (wrong.Count > 0) parts.Add("shape mismatch " + string.Join("; ", wrong.Take(4)));
            string arch = file.Metadata.TryGetValue("architecture", out var a) ? $" (file was written for '{a}')" : "";
            throw new InfluenceSharpException($"{path}: checkpoint does not fit this model{arch}: {string.Join(" | ", parts)}");
        }
        using (no_grad())
        {
            foreach (var (k, t) in state)
            {
                var src = file.Tensors[k];
                if (src.dtype != t.dtype) { using var c = src.to_type(t.dtype); t.copy_(c); }
                else t.copy_(src);
            }
        }
    }
}
