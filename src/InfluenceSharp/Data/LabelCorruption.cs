namespace InfluenceSharp.Data;

/// <summary>Which training labels were corrupted, and what they were. Saved next to a run
/// (corruption.json) so mislabel detection can be scored.</summary>
public sealed record CorruptionRecord(double Fraction, int Seed, int[] Indices, int[] TrueLabels, int[] CorruptedLabels)
{
    public bool[] Mask(int count)
    {
        var m = new bool[count];
        foreach (var i in Indices) m[i] = true;
        return m;
    }
}

public static class LabelCorruption
{
    /// <summary>Corrupts round(fraction × n) labels, chosen uniformly without replacement by a seeded
    /// generator; each corrupted label becomes a different class, uniformly among the others.</summary>
    public static (int[] Labels, CorruptionRecord Record) Corrupt(int[] labels, int numClasses, double fraction, int seed)
    {
        if (fraction < 0 || fraction > 1) throw new InfluenceSharpException($"--corrupt: fraction {fraction} is outside [0, 1]");
        if (numClasses < 2 && fraction > 0) throw new InfluenceSharpException("label corruption needs at least two classes");
        int n = labels.Length;
        int k = (int)Math.Round(fraction * n, MidpointRounding.AwayFromZero);
        var rng = new Random(seed);
        var perm = Enumerable.Range(0, n).ToArray();
        for (int i = 0; i < k; i++)
        {
            int j = i + rng.Next(n - i);
            (perm[i], perm[j]) = (perm[j], perm[i]);
        }
        var idx = perm.Take(k).OrderBy(i => i).ToArray();
        var result = (int[])labels.Clone();
        var truth = new int[k];
        var fake = new int[k];
        for (int t = 0; t < k; t++)
        {
            int i = idx[t];
            truth[t] = labels[i];
            fake[t] = (labels[i] + 1 + rng.Next(numClasses - 1)) % numClasses;
            result[i] = fake[t];
        }
        return (result, new CorruptionRecord(fraction, seed, idx, truth, fake));
    }
}
