using InfluenceSharp.Models;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>One TracIn checkpoint: the model at θ_c and its step size η_c (the learning rate used
/// around that checkpoint; the trainer records the epoch's mean learning rate in the sidecar).</summary>
public sealed record TracInCheckpoint(nn.Module<Tensor, Tensor> Model, double StepSize)
{
    /// <summary>Where the checkpoint came from (a file path), for messages; null for in-memory models.</summary>
    public string? Source { get; init; }

    /// <summary>Every complete checkpoint of a run directory (epoch order), each with its sidecar's
    /// LearningRate as η unless <paramref name="stepSize"/> overrides it (e.g. <c>_ => 1.0</c>).
    /// <paramref name="select"/> keeps a subset (e.g. every other epoch). An incomplete run (its
    /// run.json says training stopped early, or a listed checkpoint is missing) is refused unless
    /// <paramref name="allowIncomplete"/>.</summary>
    public static List<TracInCheckpoint> FromRun(string runDir, Func<Checkpoint, double>? stepSize = null, Func<Checkpoint, bool>? select = null,
        bool allowIncomplete = false) =>
        From(Checkpoint.List(runDir, allowIncomplete).Where(c => select?.Invoke(c) ?? true), stepSize);

    /// <summary>Loads the given checkpoints (η from each sidecar unless overridden).</summary>
    public static List<TracInCheckpoint> From(IEnumerable<Checkpoint> checkpoints, Func<Checkpoint, double>? stepSize = null)
    {
        var list = new List<TracInCheckpoint>();
        foreach (var c in checkpoints)
        {
            double eta = stepSize?.Invoke(c) ?? c.Info.LearningRate;
            if (!(eta > 0) || double.IsInfinity(eta))
                throw new InfluenceSharpException($"{c.WeightsPath}: step size {eta} is not a positive number (sidecar learning_rate missing? pass a step size)");
            list.Add(new TracInCheckpoint(c.LoadModel(), eta) { Source = c.WeightsPath });
        }
        if (list.Count == 0) throw new InfluenceSharpException("no checkpoints selected");
        return list;
    }

    internal static void Validate(IReadOnlyList<TracInCheckpoint> checkpoints)
    {
        if (checkpoints.Count == 0) throw new InfluenceSharpException("TracIn needs at least one checkpoint");
        foreach (var c in checkpoints)
            if (!(c.StepSize > 0) || double.IsInfinity(c.StepSize))
                throw new InfluenceSharpException($"checkpoint {c.Source ?? "(in memory)"}: step size {c.StepSize} must be a positive number");
    }

    internal static string[] Fingerprints(IEnumerable<nn.Module> models) => models.Select(ModelFingerprint.Of).ToArray();
}
