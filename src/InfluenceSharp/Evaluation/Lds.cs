using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>Linear datamodeling score.</summary>
/// <param name="Mean">mean over queries of the per-query Spearman correlation (queries where it is
/// undefined, because predictions or targets are constant over subsets, are left out).</param>
/// <param name="StandardError">sample standard deviation of the per-query values / √(number of them).</param>
/// <param name="PerQuery">Spearman correlation per query; NaN where undefined.</param>
/// <param name="Subsets">Number of retrained subsets the correlations are over.</param>
/// <param name="UndefinedQueries">Queries left out of the mean because their correlation is undefined.</param>
public sealed record LdsResult(double Mean, double StandardError, double[] PerQuery, int Subsets, int UndefinedQueries);

public static class Lds
{
    /// <summary>
    /// LDS of a score matrix. The prediction for subset S and query q is Σ_{i∈S} scores[q, i]; the
    /// LDS of q is the Spearman correlation, over subsets, of predictions and targets.
    /// </summary>
    /// <param name="scores">[n_query, n_train], positive = helps the query (any float dtype, any device).</param>
    /// <param name="masks">m subset masks of length n_train (see <see cref="LdsSubsets"/>).</param>
    /// <param name="targets">[m, n_query]: what a model trained on subset j gives query q, larger =
    /// better for q (the margin, or −loss).</param>
    public static LdsResult Score(Tensor scores, bool[][] masks, double[,] targets)
    {
        if (scores.dim() != 2) throw new InfluenceSharpException($"LDS: scores must be [n_query, n_train], got [{string.Join(", ", scores.shape)}]");
        int nq = (int)scores.shape[0], n = (int)scores.shape[1], m = masks.Length;
        if (m < 2) throw new InfluenceSharpException($"LDS: needs at least 2 subsets, got {m}");
        if (targets.GetLength(0) != m || targets.GetLength(1) != nq)
            throw new InfluenceSharpException($"LDS: targets are [{targets.GetLength(0)}, {targets.GetLength(1)}] but {m} subsets and {nq} queries need [{m}, {nq}]");
        for (int j = 0; j < m; j++)
            if (masks[j].Length != n) throw new InfluenceSharpException($"LDS: mask {j} has length {masks[j].Length}, scores have {n} training examples");

        double[] pred; // [m, nq] row-major
        using (var scope = NewDisposeScope())
        {
            var flat = new bool[(long)m * n];
            for (int j = 0; j < m; j++) masks[j].CopyTo(flat, (long)j * n);
            var s = scores.detach().cpu().to_type(ScalarType.Float64);
            var mk = torch.tensor(flat, new long[] { m, n }).to_type(ScalarType.Float64);
            pred = mk.matmul(s.t()).contiguous().data<double>().ToArray();
        }
        var perQuery = new double[nq];
        var p = new double[m];
        var t = new double[m];
        for (int q = 0; q < nq; q++)
        {
            for (int j = 0; j < m; j++) { p[j] = pred[j * nq + q]; t[j] = targets[j, q]; }
            perQuery[q] = Ranking.Spearman(p, t);
        }
        var defined = perQuery.Where(v => !double.IsNaN(v)).ToArray();
        double mean = defined.Length > 0 ? defined.Average() : double.NaN;
        double se = defined.Length > 1
            ? Math.Sqrt(defined.Sum(v => (v - mean) * (v - mean)) / (defined.Length - 1) / defined.Length)
            : double.NaN;
        return new LdsResult(mean, se, perQuery, m, nq - defined.Length);
    }
}
