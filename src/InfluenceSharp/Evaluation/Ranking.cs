namespace InfluenceSharp.Evaluation;

/// <summary>Rank statistics used by the evaluations. All inputs must be finite; NaN or infinity is a
/// user error, not something to average over silently.</summary>
public static class Ranking
{
    /// <summary>1-based ranks in ascending order of value; tied values get the mean of their ranks.</summary>
    public static double[] Ranks(ReadOnlySpan<double> x)
    {
        CheckFinite(x, "ranks");
        var v = x.ToArray();
        var order = Enumerable.Range(0, v.Length).ToArray();
        Array.Sort(v.ToArray(), order);
        var ranks = new double[v.Length];
        for (int i = 0; i < order.Length;)
        {
            int j = i;
            while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
            double avg = (i + j) / 2.0 + 1;
            for (int t = i; t <= j; t++) ranks[order[t]] = avg;
            i = j + 1;
        }
        return ranks;
    }

    /// <summary>Pearson correlation; NaN when either input is constant (correlation undefined).</summary>
    public static double Pearson(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        SameLength(x, y, "Pearson");
        CheckFinite(x, "Pearson"); CheckFinite(y, "Pearson");
        int n = x.Length;
        double mx = 0, my = 0;
        for (int i = 0; i < n; i++) { mx += x[i]; my += y[i]; }
        mx /= n; my /= n;
        double sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < n; i++)
        {
            double dx = x[i] - mx, dy = y[i] - my;
            sxy += dx * dy; sxx += dx * dx; syy += dy * dy;
        }
        if (sxx == 0 || syy == 0) return double.NaN;
        return Math.Clamp(sxy / Math.Sqrt(sxx * syy), -1, 1);
    }

    /// <summary>Spearman rank correlation: Pearson of the average ranks (the tie-corrected form
    /// scipy.stats.spearmanr computes). NaN when either input is constant.</summary>
    public static double Spearman(ReadOnlySpan<double> x, ReadOnlySpan<double> y)
    {
        SameLength(x, y, "Spearman");
        return Pearson(Ranks(x), Ranks(y));
    }

    /// <summary>ROC AUC of <paramref name="scores"/> for separating positives from negatives: the
    /// probability that a random positive scores above a random negative, ties counting 1/2
    /// (Mann-Whitney U / (n_pos n_neg)).</summary>
    public static double RocAuc(ReadOnlySpan<double> scores, ReadOnlySpan<bool> positive)
    {
        if (scores.Length != positive.Length)
            throw new InfluenceSharpException($"ROC AUC: {scores.Length} scores but {positive.Length} labels");
        var ranks = Ranks(scores);
        long nPos = 0;
        double rankSum = 0;
        for (int i = 0; i < ranks.Length; i++)
            if (positive[i]) { nPos++; rankSum += ranks[i]; }
        long nNeg = ranks.Length - nPos;
        if (nPos == 0 || nNeg == 0)
            throw new InfluenceSharpException($"ROC AUC: needs both positive and negative examples (got {nPos} positive, {nNeg} negative)");
        double u = rankSum - nPos * (nPos + 1) / 2.0;
        return u / ((double)nPos * nNeg);
    }

    internal static void CheckFinite(ReadOnlySpan<double> x, string what)
    {
        for (int i = 0; i < x.Length; i++)
            if (!double.IsFinite(x[i])) throw new InfluenceSharpException($"{what}: value {x[i]} at index {i} is not finite");
    }

    private static void SameLength(ReadOnlySpan<double> x, ReadOnlySpan<double> y, string what)
    {
        if (x.Length != y.Length) throw new InfluenceSharpException($"{what}: inputs have different lengths ({x.Length} and {y.Length})");
        if (x.Length < 2) throw new InfluenceSharpException($"{what}: needs at least 2 values, got {x.Length}");
    }
}
