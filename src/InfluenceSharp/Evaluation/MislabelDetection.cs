namespace InfluenceSharp.Evaluation;

/// <summary>How well self-influence finds corrupted labels.</summary>
/// <param name="Inspected">Fractions of the training set inspected: 0, 0.01, ..., 1 (101 points).</param>
/// <param name="Found">Fraction of all corrupted examples among the top <c>Inspected[i]</c> by self-influence.</param>
/// <param name="Table">Found at 5%, 10%, 20% and 30% inspected (keys 0.05, 0.1, 0.2, 0.3).</param>
/// <param name="RocAuc">ROC AUC of self-influence for corrupted vs clean.</param>
/// <param name="Count">Number of training examples ranked.</param>
/// <param name="Corrupted">Number of them that are corrupted.</param>
public sealed record DetectionResult(double[] Inspected, double[] Found, IReadOnlyDictionary<double, double> Table,
    double RocAuc, int Count, int Corrupted);

/// <summary>Mislabel detection: inspect training examples in descending order of self-influence
/// (high = suspicious) and count how many of the truly corrupted ones are found.</summary>
public static class MislabelDetection
{
    public static DetectionResult Evaluate(ReadOnlySpan<double> selfInfluence, ReadOnlySpan<bool> corrupted)
    {
        int n = selfInfluence.Length;
        if (corrupted.Length != n)
            throw new InfluenceSharpException($"mislabel detection: {n} self-influence values but a corruption mask of {corrupted.Length}");
        int nBad = 0;
        foreach (bool b in corrupted) if (b) nBad++;
        if (nBad == 0) throw new InfluenceSharpException("mislabel detection: no example is marked corrupted");
        var curve = FoundCurve(selfInfluence, corrupted, nBad);
        // Percent × n is an exact integer, so the cut (percent × n / 100, rounded) has no float drift.
        double FoundAtPercent(int percent) => curve((double)percent * n / 100);
        var inspected = Enumerable.Range(0, 101).Select(p => p / 100.0).ToArray();
        var found = Enumerable.Range(0, 101).Select(FoundAtPercent).ToArray();
        var table = new[] { 5, 10, 20, 30 }.ToDictionary(p => p / 100.0, FoundAtPercent);
        double auc = nBad == n ? double.NaN : Ranking.RocAuc(selfInfluence, corrupted);
        return new DetectionResult(inspected, found, table, auc, n, nBad);
    }

    /// <summary>Fraction found after inspecting c examples (c real, 0..n), rounding c half up to a
    /// whole example. Within a group of tied scores the order is arbitrary, so a cut inside the
    /// group counts the expected number found under a random order of that group.</summary>
    private static Func<double, double> FoundCurve(ReadOnlySpan<double> score, ReadOnlySpan<bool> bad, int nBad)
    {
        Ranking.CheckFinite(score, "mislabel detection");
        int n = score.Length;
        var s = score.ToArray();
        var order = Enumerable.Range(0, n).ToArray();
        Array.Sort(order, (a, b) => s[b].CompareTo(s[a]));
        // cum[c] = expected corrupted count among the top c.
        var cum = new double[n + 1];
        var flags = bad.ToArray();
        for (int i = 0; i < n;)
        {
            int j = i;
            int groupBad = 0;
            while (j < n && s[order[j]] == s[order[i]]) { if (flags[order[j]]) groupBad++; j++; }
            double perItem = (double)groupBad / (j - i);
            for (int t = i; t < j - 1; t++) cum[t + 1] = cum[i] + perItem * (t + 1 - i);
            cum[j] = cum[i] + groupBad; // exact at group ends, so 100% inspected is exactly 1
            i = j;
        }
        return c => cum[(int)Math.Round(c, MidpointRounding.AwayFromZero)] / nBad;
    }
}
