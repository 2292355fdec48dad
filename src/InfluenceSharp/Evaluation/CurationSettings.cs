using InfluenceSharp.Data;

namespace InfluenceSharp.Evaluation;

/// <summary>What a curation experiment retrains: the full data ("none"), per removal count k the k
/// most detrimental and the k most helpful examples of every method, and the baselines k random
/// examples and the k most self-influential; with a label-corruption record, the oracle that removes
/// exactly the flipped labels (a ceiling for the mislabel case); with training-group labels, group
/// balancing by removal and by upsampling.</summary>
public static class CurationSettings
{
    /// <summary>The settings, "none" first. <paramref name="scores"/>: per method (in the order of
    /// <paramref name="methods"/>), each training example's validation attribution;
    /// <paramref name="self"/>: self-influence of every training example by the first method;
    /// <paramref name="keep"/>: examples a reviewer decided to keep, which no detrimental, helpful,
    /// random or self-influence set removes (the next ones in the ranking are taken instead).</summary>
    public static List<CurationSetting> With(IReadOnlyList<int> ks, IReadOnlyList<string> methods, IReadOnlyDictionary<string, double[]> scores,
        double[] self, int trainCount, CorruptionRecord? corruption = null, int[]? trainGroups = null, int numGroups = 1, IReadOnlyCollection<int>? keep = null)
    {
        var kept = keep is { Count: > 0 } ? new HashSet<int>(keep) : null;
        int[] Take(IEnumerable<int> order, int k) => (kept is null ? order : order.Where(i => !kept.Contains(i))).Take(k).ToArray();
        // Random removal draws among the examples that may be removed (all of them without keep decisions).
        var open = kept is null ? null : Enumerable.Range(0, trainCount).Where(i => !kept.Contains(i)).ToArray();
        int[] RandomSet(int k) => open is null ? Removal.Set(RemovalKind.Random, new double[trainCount], k, 0)
            : Removal.Set(RemovalKind.Random, new double[open.Length], k, 0).Select(j => open[j]).ToArray();
        var list = new List<CurationSetting> { new("none", "none", null, 0, Array.Empty<int>()) };
        foreach (int k in ks)
        {
            foreach (var m in methods)
            {
                list.Add(new($"detrimental-{m}-k{k}", "detrimental", m, k, Take(ValidationAttribution.MostDetrimental(scores[m]), k)));
                list.Add(new($"helpful-{m}-k{k}", "helpful", m, k, Take(ValidationAttribution.MostHelpful(scores[m]), k)));
            }
            list.Add(new($"random-k{k}", "random", null, k, RandomSet(k)));
            list.Add(new($"self-influence-{methods[0]}-k{k}", "self-influence", methods[0], k, Take(ValidationAttribution.MostHelpful(self), k)));
        }
        if (corruption is { Indices.Length: > 0 } && corruption.Indices.Length < trainCount)
            list.Add(new("flipped-labels", "flipped-labels", null, corruption.Indices.Length, corruption.Indices.Order().ToArray()));
        if (trainGroups is not null)
        {
            var removed = CurationRun.BalanceRemoved(trainGroups, numGroups, 0);
            if (removed.Length > 0 && removed.Length < trainCount) list.Add(new("balance", "balance", null, removed.Length, removed));
            var added = CurationRun.UpsampleAdded(trainGroups, numGroups, 0);
            if (added.Length > 0) list.Add(new("balance-upsample", "balance-upsample", null, 0, Array.Empty<int>(), added));
        }
        return list;
    }
}
