using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>Linear datamodeling score.</summary>
/// <param name="Mean">mean over ALL queries of the per-query Spearman correlation, a query whose
/// correlation is undefined (predictions or targets constant over subsets) counting as 0: a method
/// that predicts nothing for a query gets no credit for it, and leaving such queries out would
/// inflate the mean.</param>
/// <param name="StandardError">sample standard deviation of the per-query values (undefined as 0) / √(number of queries).</param>
/// <param name="PerQuery">Spearman correlation per query; NaN where undefined.</param>
/// <param name="Subsets">Number of retrained subsets the correlations are over.</param>
/// <param name="UndefinedQueries">Queries whose correlation is undefined (counted as 0 in the mean).</param>
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
        return Summarise(perQuery, m);
    }

    /// <summary>The LDS noise ceiling: per query, the Spearman correlation over subsets of what one
    /// retrained model gives (<paramref name="predicted"/>, [m, n_query]) with what another model
    /// trained on the same subset with another seed gives (<paramref name="targets"/>): how well the
    /// best possible predictor of a single retraining can do when retraining itself is noisy.
    /// Aggregated like <see cref="Score"/> (undefined as 0, mean ± standard error).</summary>
    public static LdsResult Agreement(double[,] predicted, double[,] targets)
    {
        int m = predicted.GetLength(0), nq = predicted.GetLength(1);
        if (targets.GetLength(0) != m || targets.GetLength(1) != nq)
            throw new InfluenceSharpException($"LDS: predictions are [{m}, {nq}] but targets are [{targets.GetLength(0)}, {targets.GetLength(1)}]");
        if (m < 2) throw new InfluenceSharpException($"LDS: needs at least 2 subsets, got {m}");
        var perQuery = new double[nq];
        var p = new double[m]; var t = new double[m];
        for (int q = 0; q < nq; q++)
        {
            for (int j = 0; j < m; j++) { p[j] = predicted[j, q]; t[j] = targets[j, q]; }
            perQuery[q] = Ranking.Spearman(p, t);
        }
        return Summarise(perQuery, m);
    }

    /// <summary>Undefined correlations count as 0 (no predictive power), never dropped: dropping them
    /// would average over only the queries where the method happened to be defined.</summary>
    static LdsResult Summarise(double[] perQuery, int subsets)
    {
        var (mean, se) = Statistics.MeanStandardError(perQuery.Select(v => double.IsNaN(v) ? 0 : v).ToArray(), single: double.NaN);
        return new LdsResult(mean, se, perQuery, subsets, perQuery.Count(double.IsNaN));
    }
}
