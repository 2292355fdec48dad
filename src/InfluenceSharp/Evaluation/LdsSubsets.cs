namespace InfluenceSharp.Evaluation;

/// <summary>The random training subsets of the linear datamodeling score.</summary>
public static class LdsSubsets
{
    /// <summary>Size of each subset: round(alpha × n), halves rounded up.</summary>
    public static int SubsetSize(int n, double alpha)
    {
        if (!(alpha > 0 && alpha < 1)) throw new InfluenceSharpException($"--alpha {alpha}: must be in (0, 1)");
        int size = (int)Math.Round(alpha * n, MidpointRounding.AwayFromZero);
        if (size < 1 || size >= n) throw new InfluenceSharpException($"--alpha {alpha}: a subset of {size} of {n} training examples is empty or everything");
        return size;
    }

    /// <summary>Mask j (true = in the subset) of a seeded family: a uniform random subset of size
    /// round(alpha × n), drawn by a partial Fisher-Yates shuffle from System.Random with a seed
    /// derived from (seed, j). The same (n, alpha, seed, j) gives the same mask in any process, and
    /// mask j does not depend on how many masks are drawn.</summary>
    public static bool[] Mask(int n, double alpha, int seed, int j)
    {
        int size = SubsetSize(n, alpha);
        var rng = new Random(Seeds.Derive(seed, j));
        var perm = Enumerable.Range(0, n).ToArray();
        var mask = new bool[n];
        for (int i = 0; i < size; i++)
        {
            int k = i + rng.Next(n - i);
            (perm[i], perm[k]) = (perm[k], perm[i]);
            mask[perm[i]] = true;
        }
        return mask;
    }

    /// <summary>Masks 0..m−1 of the family.</summary>
    public static bool[][] Masks(int n, int m, double alpha = 0.5, int seed = 0)
    {
        if (m < 2) throw new InfluenceSharpException($"--subsets {m}: LDS needs at least 2 subsets");
        return Enumerable.Range(0, m).Select(j => Mask(n, alpha, seed, j)).ToArray();
    }

    /// <summary>The scored target tokens of each subset of a text training set. Sequences hold
    /// different numbers of tokens (padding, prompts), and the training loss averages over tokens, so
    /// subsets of one size still differ in how much each of their sequences weighs: a spread the
    /// additive LDS prediction (a sum over the subset's sequences) does not model.</summary>
    public static long[] ScoredTokens(Data.TextDataset train, bool[][] masks)
    {
        var perSequence = new long[train.Count];
        for (int i = 0; i < train.Count; i++)
            for (int t = 0; t < train.SequenceLength; t++)
                if (train.IsScored(i, t)) perSequence[i]++;
        return masks.Select(m =>
        {
            if (m.Length != train.Count) throw new InfluenceSharpException($"LDS: a mask of length {m.Length} for {train.Count} training sequences");
            long s = 0;
            for (int i = 0; i < m.Length; i++) if (m[i]) s += perSequence[i];
            return s;
        }).ToArray();
    }

    /// <summary>The training indices in a mask, ascending.</summary>
    public static int[] Indices(bool[] mask) => Enumerable.Range(0, mask.Length).Where(i => mask[i]).ToArray();
}
