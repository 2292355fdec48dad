using System.Globalization;
using System.Security.Cryptography;
using InfluenceSharp.Methods;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Runs;

/// <summary>TRAK's ensemble members. Either independently trained models made here (--ensemble N: the
/// run's own final model plus models retrained with the run's settings and seeds 1..N−1, cached under
/// RUN_DIR/ensemble/seed-K), or models the user already has (--members RUN,... and/or
/// --member-epochs last|all|E,...: checkpoints of --run and of other runs trained on the same data
/// with the same architecture).</summary>
public static class Ensemble
{
    /// <summary>True when the settings choose members from existing runs/checkpoints rather than --ensemble.</summary>
    public static bool FromRuns(MethodSettings s) => s.Members.Count > 0 || s.MemberEpochs != "last";

    /// <summary>The run's final model plus count−1 models retrained with other seeds (cached).</summary>
    /// <param name="run">the run whose settings and data the members are trained with.</param>
    /// <param name="count">the ensemble's size, at least 1.</param>
    /// <param name="log">told when a member is trained (null: silent).</param>
    public static List<nn.Module<Tensor, Tensor>> Models(Run run, int count, Action<string>? log = null)
    {
        if (count < 1) throw new InfluenceSharpException($"--ensemble {count}: must be at least 1");
        var models = new List<nn.Module<Tensor, Tensor>> { run.Last.LoadModel() };
        var baseOptions = run.Last.Info.Training ?? new TrainOptions();
        for (int k = 1; k < count; k++)
        {
            string dir = Path.Combine(run.Dir, "ensemble", $"seed-{baseOptions.Seed + k}");
            string final = Path.Combine(dir, $"epoch-{baseOptions.Epochs:D4}.safetensors");
            if (!File.Exists(final) || !File.Exists(Checkpoint.SidecarPath(final)))
            {
                log?.Invoke($"training ensemble model {k + 1}/{count} (seed {baseOptions.Seed + k}) into {dir}");
                new Trainer(baseOptions with { Seed = baseOptions.Seed + k }).Train(run.Last.Info.Model, run.Data.Train, null, dir,
                    run.Data.Corruption, run.Data.Source);
            }
            var c = Checkpoint.Open(final);
            if (c.Info.DataFingerprint != run.Data.Train.Fingerprint())
                throw new InfluenceSharpException($"{final}: ensemble model was trained on other data; delete {Path.Combine(run.Dir, "ensemble")}");
            models.Add(c.LoadModel());
        }
        return models;
    }

    /// <summary>Parses --member-epochs: null for "last", an empty array for "all", else the epochs.</summary>
    public static int[]? ParseEpochs(string spec, string option = "--member-epochs")
    {
        if (spec == "last") return null;
        if (spec == "all") return Array.Empty<int>();
        var parts = spec.Split(',', StringSplitOptions.TrimEntries);
        var epochs = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out epochs[i]) || epochs[i] < 1)
                throw new InfluenceSharpException($"{option} {spec}: give last, all, or epoch numbers E,F,... (each at least 1)");
        if (epochs.Distinct().Count() != epochs.Length) throw new InfluenceSharpException($"{option} {spec}: an epoch is listed twice");
        return epochs;
    }

    /// <summary>The checkpoints of --run that a last|all|E,... spec selects (epoch order).</summary>
    public static List<Checkpoint> RunCheckpoints(Run run, string spec, string option)
    {
        var epochs = ParseEpochs(spec, option);
        if (epochs is null) return new List<Checkpoint> { run.Last };
        if (epochs.Length == 0) return run.Checkpoints.ToList();
        return epochs.Order().Select(e => run.Checkpoints.FirstOrDefault(c => c.Info.Epoch == e) ?? throw new InfluenceSharpException(
            $"{option} {spec}: --run {run.Dir} has no checkpoint of epoch {e} (it has epochs {string.Join(",", run.Checkpoints.Select(c => c.Info.Epoch))})")).ToList();
    }

    /// <summary>The checkpoints that are TRAK's ensemble members: the chosen epochs of --run, then of
    /// each --members run (a run directory or one checkpoint file), in order. Refuses, naming the
    /// member, one trained on other data or with another architecture.</summary>
    public static List<Checkpoint> MemberCheckpoints(Run run, MethodSettings s)
    {
        var epochs = ParseEpochs(s.MemberEpochs);
        string dataFp = run.Data.Train.Fingerprint();
        var spec = run.Last.Info.Model;
        var sources = new List<(string Name, List<Checkpoint> Checkpoints)> { ($"--run {run.Dir}", run.Checkpoints) };
        foreach (var m in s.Members)
        {
            List<Checkpoint> list;
            if (Directory.Exists(m) || File.Exists(m)) run.BeforeReading?.Invoke(m);
            if (Directory.Exists(m)) list = Checkpoint.List(m);
            else if (File.Exists(m)) list = new List<Checkpoint> { Checkpoint.Open(m) };
            else throw new InfluenceSharpException($"--members {m}: no such run directory or checkpoint file");
            sources.Add(($"--members {m}", list));
        }
        var chosen = new List<Checkpoint>();
        foreach (var (name, list) in sources)
        {
            List<Checkpoint> picked;
            if (epochs is null) picked = new List<Checkpoint> { list[^1] };
            else if (epochs.Length == 0) picked = list;
            else
            {
                picked = new List<Checkpoint>();
                foreach (int e in epochs)
                    picked.Add(list.FirstOrDefault(c => c.Info.Epoch == e) ?? throw new InfluenceSharpException(
                        $"--member-epochs {s.MemberEpochs}: {name} has no checkpoint of epoch {e} (it has epochs {string.Join(",", list.Select(c => c.Info.Epoch))})"));
            }
            foreach (var c in picked)
            {
                if (c.Info.DataFingerprint != dataFp)
                    throw new InfluenceSharpException($"{name}: {c.WeightsPath} was trained on other data (data fingerprint {c.Info.DataFingerprint}, " +
                        $"--run's training data is {dataFp}); TRAK's ensemble members must be trained on the run's training set");
                if (c.Info.Model with { HiddenWidths = null } != spec with { HiddenWidths = null }
                    || !(c.Info.Model.HiddenWidths ?? Array.Empty<int>()).SequenceEqual(spec.HiddenWidths ?? Array.Empty<int>()))
                    throw new InfluenceSharpException($"{name}: {c.WeightsPath} is a {c.Info.Model.Describe()}, but --run's model is a {spec.Describe()}; " +
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
