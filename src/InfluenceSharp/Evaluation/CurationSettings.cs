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
    /// <paramref name="self"/>: self-influence of every training example by the first method.</summary>
    public static List<CurationSetting> With(IReadOnlyList<int> ks, IReadOnlyList<string> methods, IReadOnlyDictionary<string, double[]> scores,
        double[] self, int trainCount, CorruptionRecord? corruption = null, int[]? trainGroups = null, int numGroups = 1)
    {
        var list = new List<CurationSetting> { new("none", "none", null, 0, Array.Empty<int>()) };
        foreach (int k in ks)
        {
            foreach (var m in methods)
            {
                list.Add(new($"detrimental-{m}-k{k}", "detrimental", m, k, ValidationAttribution.MostDetrimental(scores[m]).Take(k).ToArray()));
                list.Add(new($"helpful-{m}-k{k}", "helpful", m, k, ValidationAttribution.MostHelpful(scores[m]).Take(k).ToArray()));
            }
            list.Add(new($"random-k{k}", "random", null, k, Removal.Set(RemovalKind.Random, new double[trainCount], k, 0)));
            list.Add(new($"self-influence-{methods[0]}-k{k}", "self-influence", methods[0], k, ValidationAttribution.MostHelpful(self).Take(k).ToArray()));
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
