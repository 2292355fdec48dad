using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>The validation objective whose change a training example's curation score predicts.</summary>
public enum CurationObjective
{
    /// <summary>Mean validation loss: w_q = 1/n_val.</summary>
    Mean,
    /// <summary>Mean loss of one group g: w_q = [g_q = g] / n_g.</summary>
    Group,
    /// <summary>The group with the highest mean validation loss under the current model, as <see cref="Group"/>.</summary>
    WorstGroup,
    /// <summary>D3M's group-weighted objective (see <see cref="ValidationAttribution.Weights"/>).</summary>
    D3m,
    /// <summary>D3M's weights clipped at zero: only the groups worse than average count, so the
    /// objective cannot be lowered by raising the loss of the groups that already do well.</summary>
    D3mPositive,
}

/// <summary>
/// Validation-set attribution (data curation, D3M): the predicted effect of each training example on a
/// validation objective J = Σ_q w_q L(q), a weighted sum of validation losses.
///
/// With the library's sign convention, score(q, i) &gt; 0 means up-weighting training example i lowers query q's loss.
/// The curation score of i is the same weighted sum of its pairwise scores,
///
///     s_i = Σ_q w_q · score(q, i),
///
/// so s_i &gt; 0: example i helps the objective (up-weighting it lowers J; removing it is predicted to
/// raise J), and s_i &lt; 0: i is detrimental (removing it is predicted to lower J). Curation removes the
/// most negative s_i first. The weights per objective (n_g = validation examples of group g, L̄_g =
/// their mean loss under the run's model, G = number of groups, L̄ = (1/G) Σ_g L̄_g):
///
///   mean:        w_q = 1 / n_val
///   group g:     w_q = [g_q = g] / n_g
///   worst-group: group g* = argmax_g L̄_g (lowest id on ties), then as group g*
///   d3m:         w_q = (L̄_{g_q} − L̄) / n_{g_q}, i.e. s_i = Σ_g (L̄_g − L̄) · mean_{q∈g} score(q, i)
///   d3m-positive: w_q = max(L̄_{g_q} − L̄, 0) / n_{g_q}
///
/// The d3m weighting is our reading of D3M (Jain et al., NeurIPS 2024): each group's mean attribution
/// counts in proportion to how much worse (or better) than the average group it does, so an example
/// that helps the groups that already do well and hurts the groups that do badly (the ones carrying a
/// spurious correlation) gets the most negative score. With equal group losses every weight is 0.
/// The scores are streamed: the validation set goes to <see cref="IAttributionMethod.Pairwise"/> in
/// chunks, each score block is reduced at once, and only n_train numbers are kept.
/// </summary>
public static class ValidationAttribution
{
    /// <summary>Mean loss of each group; throws, naming the group, when a group in [0, numGroups) has no
    /// example (a group objective is undefined for it).</summary>
    public static double[] GroupMeanLosses(double[] losses, int[] groups, int numGroups)
    {
        var (counts, sums) = GroupSums(losses, groups, numGroups);
        var means = new double[numGroups];
        for (int g = 0; g < numGroups; g++) means[g] = sums[g] / counts[g];
        return means;
    }

    /// <summary>Validation groups: every id in [0, numGroups), each present at least once, else an error naming the empty group.</summary>
    public static void RequireAllGroups(int[] groups, int numGroups, string what)
    {
        var counts = new int[numGroups];
        for (int q = 0; q < groups.Length; q++)
        {
            if (groups[q] < 0 || groups[q] >= numGroups)
                throw new InfluenceSharpException($"{what}: group {groups[q]} of example {q} is outside [0, {numGroups})");
            counts[groups[q]]++;
        }
        for (int g = 0; g < numGroups; g++)
            if (counts[g] == 0)
                throw new InfluenceSharpException($"{what}: group {g} has no example in the validation set ({groups.Length} examples); every group needs at least one");
    }

    static (int[] Counts, double[] Sums) GroupSums(double[] values, int[] groups, int numGroups)
    {
        if (values.Length != groups.Length) throw new InfluenceSharpException($"validation objective: {values.Length} losses but {groups.Length} group labels");
        RequireAllGroups(groups, numGroups, "validation objective");
        var counts = new int[numGroups];
        var sums = new double[numGroups];
        for (int q = 0; q < values.Length; q++) { counts[groups[q]]++; sums[groups[q]] += values[q]; }
        return (counts, sums);
    }

    /// <summary>The weights w_q of the objective (see the class summary).</summary>
    /// <param name="objective">Which objective.</param>
    /// <param name="count">Number of validation examples.</param>
    /// <param name="groups">Group id per validation example (required for every objective but Mean).</param>
    /// <param name="numGroups">Groups are 0..numGroups−1 (every one present in the validation set).</param>
    /// <param name="losses">Validation losses under the current model (WorstGroup and D3m).</param>
    /// <param name="group">The group of <see cref="CurationObjective.Group"/>.</param>
    public static double[] Weights(CurationObjective objective, int count, int[]? groups = null, int numGroups = 0,
        double[]? losses = null, int group = -1)
    {
        if (count <= 0) throw new InfluenceSharpException("validation objective: the validation set is empty");
        if (objective == CurationObjective.Mean) return Enumerable.Repeat(1.0 / count, count).ToArray();
        if (groups is null || groups.Length != count)
            throw new InfluenceSharpException($"validation objective {objective}: needs a group label per validation example ({count}), got {groups?.Length ?? 0}");
        var counts = new int[numGroups];
        RequireAllGroups(groups, numGroups, $"validation objective {objective}");
        foreach (var g in groups) counts[g]++;
        var w = new double[count];
        switch (objective)
        {
            case CurationObjective.Group:
            case CurationObjective.WorstGroup:
            {
                int target = group;
                if (objective == CurationObjective.WorstGroup)
                {
                    if (losses is null) throw new InfluenceSharpException("validation objective worst-group: needs the validation losses");
                    var means = GroupMeanLosses(losses, groups, numGroups);
                    target = 0;
                    for (int g = 1; g < numGroups; g++) if (means[g] > means[target]) target = g;
                }
                if (target < 0 || target >= numGroups) throw new InfluenceSharpException($"validation objective group: group {target} is outside [0, {numGroups})");
                for (int q = 0; q < count; q++) w[q] = groups[q] == target ? 1.0 / counts[target] : 0;
                return w;
            }
            case CurationObjective.D3m:
            case CurationObjective.D3mPositive:
            {
                if (losses is null) throw new InfluenceSharpException($"validation objective {objective}: needs the validation losses");
                var means = GroupMeanLosses(losses, groups, numGroups);
                double avg = means.Average();
                for (int q = 0; q < count; q++)
                {
                    double excess = means[groups[q]] - avg;
                    w[q] = (objective == CurationObjective.D3mPositive ? Math.Max(excess, 0) : excess) / counts[groups[q]];
                }
                return w;
            }
            default:
                throw new ArgumentOutOfRangeException(nameof(objective));
        }
    }

    /// <summary>The worst group (highest mean loss; lowest id on ties).</summary>
    public static int WorstGroup(double[] losses, int[] groups, int numGroups)
    {
        var means = GroupMeanLosses(losses, groups, numGroups);
        int target = 0;
        for (int g = 1; g < numGroups; g++) if (means[g] > means[target]) target = g;
        return target;
    }

    /// <summary>s_i = Σ_q w_q · score(q, i) for every training example, in float64, streaming the
    /// validation examples with non-zero weight through <paramref name="method"/>'s pairwise scores
    /// in chunks of <paramref name="chunkSize"/> (memory: chunk × train block, never n_val × n_train);
    /// a method that offers <see cref="IWeightedQueryAttribution"/> scores the weighted sum at once.</summary>
    public static double[] Scores(IAttributionMethod method, IDataset validation, IDataset train, double[] weights, int chunkSize = 256)
    {
        if (weights.Length != validation.Count)
            throw new InfluenceSharpException($"validation attribution: {weights.Length} weights for {validation.Count} validation examples");
        if (chunkSize < 1) throw new InfluenceSharpException($"validation attribution: chunk size {chunkSize} must be at least 1");
        Ranking.CheckFinite(weights, "validation attribution: weights");
        if (method is IWeightedQueryAttribution weighted)
        {
            var sums = weighted.WeightedScores(validation, weights, train);
            Ranking.CheckFinite(sums, $"validation attribution ({method.Name})");
            return sums;
        }
        var active = Enumerable.Range(0, weights.Length).Where(q => weights[q] != 0).ToArray();
        var acc = new double[train.Count];
        for (int start = 0; start < active.Length; start += chunkSize)
        {
            int len = Math.Min(chunkSize, active.Length - start);
            var idx = active.AsSpan(start, len).ToArray();
            var chunk = new SubsetDataset(validation, idx);
            using var w = torch.tensor(idx.Select(q => weights[q]).ToArray(), new long[] { 1, len }, ScalarType.Float64);
            method.Pairwise(chunk, train, (offset, block) =>
            {
                using var scope = NewDisposeScope();
                if (block.dim() != 2 || block.shape[0] != len)
                    throw new InfluenceSharpException($"validation attribution: {method.Name} returned a [{string.Join(", ", block.shape)}] block for {len} queries");
                var r = w.matmul(block.detach().cpu().to_type(ScalarType.Float64)).reshape(-1).data<double>().ToArray();
                for (int j = 0; j < r.Length; j++) acc[offset + j] += r[j];
            });
        }
        Ranking.CheckFinite(acc, $"validation attribution ({method.Name})");
        return acc;
    }

    /// <summary>Training indices by ascending score (most detrimental first; ties by lower index).</summary>
    public static int[] MostDetrimental(double[] scores) =>
        Enumerable.Range(0, scores.Length).OrderBy(i => scores[i]).ThenBy(i => i).ToArray();

    /// <summary>Training indices by descending score (most helpful first; ties by lower index).</summary>
    public static int[] MostHelpful(double[] scores) =>
        Enumerable.Range(0, scores.Length).OrderByDescending(i => scores[i]).ThenBy(i => i).ToArray();

    /// <summary>Parses "mean" | "worst-group" | "d3m" | "group:G".</summary>
    public static (CurationObjective Objective, int Group) ParseObjective(string s)
    {
        switch (s)
        {
            case "mean": return (CurationObjective.Mean, -1);
            case "worst-group": return (CurationObjective.WorstGroup, -1);
            case "d3m": return (CurationObjective.D3m, -1);
            case "d3m-positive": return (CurationObjective.D3mPositive, -1);
        }
        if (s.StartsWith("group:", StringComparison.Ordinal) && int.TryParse(s[6..], NumberStyles.None, CultureInfo.InvariantCulture, out int g))
            return (CurationObjective.Group, g);
        throw new InfluenceSharpException($"objective '{s}': choose mean, worst-group, d3m, d3m-positive or group:G");
    }
}
