using System.Security.Cryptography;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Trak;

/// <summary>TRAK's ensemble members: independently trained models made here (the run's own final
/// model plus models retrained with the run's settings and seeds + 1..N−1, cached under
/// RUN_DIR/ensemble/seed-K), or checkpoints of runs the user already has, trained on the same data
/// with the same architecture.</summary>
public static class TrakEnsemble
{
    /// <summary>The run's final model and <paramref name="count"/> − 1 more, trained (or loaded from
    /// RUN_DIR/ensemble) with the final checkpoint's training settings and seeds seed + k.
    /// <paramref name="log"/> hears of each model it trains.</summary>
    public static List<nn.Module<Tensor, Tensor>> TrainedModels(string runDir, Checkpoint last, RunData data, int count, Action<string>? log = null)
    {
        if (count < 1) throw new InfluenceSharpException($"TRAK ensemble of {count} models: must be at least 1");
        var models = new List<nn.Module<Tensor, Tensor>> { last.LoadModel() };
        var baseOptions = last.Info.Training ?? new TrainOptions();
        for (int k = 1; k < count; k++)
        {
            string dir = Path.Combine(runDir, "ensemble", $"seed-{baseOptions.Seed + k}");
            string final = Path.Combine(dir, $"epoch-{baseOptions.Epochs:D4}.safetensors");
            if (!File.Exists(final) || !File.Exists(Checkpoint.SidecarPath(final)))
            {
                log?.Invoke($"training ensemble model {k + 1}/{count} (seed {baseOptions.Seed + k}) into {dir}");
                new Trainer(baseOptions with { Seed = baseOptions.Seed + k }).Train(last.Info.Model, data.Train, null, dir, data.Corruption, data.Source);
            }
            var c = Checkpoint.Open(final);
            if (c.Info.DataFingerprint != data.Train.Fingerprint())
                throw new InfluenceSharpException($"{final}: ensemble model was trained on other data; delete {Path.Combine(runDir, "ensemble")}");
            models.Add(c.LoadModel());
        }
        return models;
    }

    /// <summary>The checkpoints of <paramref name="list"/> that <paramref name="epochs"/> selects: null,
    /// the last; empty, all; else those epochs, in the given order. A missing epoch is an error that
    /// starts with <paramref name="what"/> and names <paramref name="owner"/>.</summary>
    public static List<Checkpoint> Select(IReadOnlyList<Checkpoint> list, int[]? epochs, string what, string owner)
    {
        if (epochs is null) return new List<Checkpoint> { list[^1] };
        if (epochs.Length == 0) return list.ToList();
        return epochs.Select(e => list.FirstOrDefault(c => c.Info.Epoch == e) ?? throw new InfluenceSharpException(
            $"{what}: {owner} has no checkpoint of epoch {e} (it has epochs {string.Join(",", list.Select(c => c.Info.Epoch))})")).ToList();
    }

    /// <summary>The members: the selected epochs of each source (a name for messages and its
    /// checkpoints in epoch order), in order. Refuses, naming the source, a member trained on other
    /// data than <paramref name="dataFingerprint"/> or with another architecture than
    /// <paramref name="model"/>, and a checkpoint listed twice.</summary>
    public static List<Checkpoint> Members(IEnumerable<(string Name, List<Checkpoint> Checkpoints)> sources, int[]? epochs, string what,
        string dataFingerprint, ModelSpec model)
    {
        var chosen = new List<Checkpoint>();
        foreach (var (name, list) in sources)
        {
            var picked = Select(list, epochs, what, name);
            foreach (var c in picked)
            {
                if (c.Info.DataFingerprint != dataFingerprint)
                    throw new InfluenceSharpException($"{name}: {c.WeightsPath} was trained on other data (data fingerprint {c.Info.DataFingerprint}, " +
                        $"--run's training data is {dataFingerprint}); TRAK's ensemble members must be trained on the run's training set");
                if (c.Info.Model with { HiddenWidths = null } != model with { HiddenWidths = null }
                    || !(c.Info.Model.HiddenWidths ?? Array.Empty<int>()).SequenceEqual(model.HiddenWidths ?? Array.Empty<int>()))
                    throw new InfluenceSharpException($"{name}: {c.WeightsPath} is a {c.Info.Model.Describe()}, but --run's model is a {model.Describe()}; " +
                        "TRAK's ensemble members must share the architecture");
            }
            chosen.AddRange(picked);
        }
        var dup = chosen.GroupBy(c => Path.GetFullPath(c.WeightsPath)).FirstOrDefault(g => g.Count() > 1);
        if (dup is not null) throw new InfluenceSharpException($"--members: {dup.Key} is listed twice (it would count double in the ensemble)");
        return chosen;
    }

    /// <summary>Identifies a member list in store names: a hash of the members' weight-file hashes, in order.</summary>
    public static string Key(IEnumerable<Checkpoint> members) =>
        Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(string.Join(",", members.Select(c => c.Hash)))))[..12];
}
