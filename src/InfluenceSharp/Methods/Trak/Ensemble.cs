using System.Globalization;
using InfluenceSharp.Methods;
using InfluenceSharp.Runs;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Trak;

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
        return TrakEnsemble.TrainedModels(run.Dir, run.Last, run.Data, count, log);
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
        return TrakEnsemble.Select(run.Checkpoints, epochs?.Order().ToArray(), $"{option} {spec}", $"--run {run.Dir}");
    }

    /// <summary>The checkpoints that are TRAK's ensemble members: the chosen epochs of --run, then of
    /// each --members run (a run directory or one checkpoint file), in order. Refuses, naming the
    /// member, one trained on other data or with another architecture.</summary>
    public static List<Checkpoint> MemberCheckpoints(Run run, MethodSettings s)
    {
        var epochs = ParseEpochs(s.MemberEpochs);
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
        return TrakEnsemble.Members(sources, epochs, $"--member-epochs {s.MemberEpochs}", run.Data.Train.Fingerprint(), run.Last.Info.Model);
    }

    /// <summary>Identifies a member list in store names: a hash of the members' weight-file hashes, in order.</summary>
    public static string Key(IEnumerable<Checkpoint> members) => TrakEnsemble.Key(members);
}
