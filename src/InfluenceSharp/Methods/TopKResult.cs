namespace InfluenceSharp.Methods;

/// <summary>The k best training examples of each query, best first.</summary>
/// <param name="Proponents">[n_query][≤k] train indices with the largest scores (most helpful), descending.</param>
/// <param name="ProponentScores">The proponents' scores, same shape.</param>
/// <param name="Opponents">[n_query][≤k] train indices with the smallest scores (most harmful), ascending.</param>
/// <param name="OpponentScores">The opponents' scores, same shape.</param>
public sealed record TopKResult(int[][] Proponents, double[][] ProponentScores, int[][] Opponents, double[][] OpponentScores)
{
    /// <summary>Only positive-scored proponents (helpful) and negative-scored opponents (harmful): when
    /// k exceeds the number of examples of one sign, the others are not listed under the wrong name.</summary>
    public TopKResult WithStrictSigns()
    {
        (int[][], double[][]) Keep(int[][] idx, double[][] sc, Func<double, bool> ok) =>
            (idx.Select((row, q) => row.Where((_, j) => ok(sc[q][j])).ToArray()).ToArray(), sc.Select(row => row.Where(ok).ToArray()).ToArray());
        var (p, ps) = Keep(Proponents, ProponentScores, s => s > 0);
        var (o, os) = Keep(Opponents, OpponentScores, s => s < 0);
        return new TopKResult(p, ps, o, os);
    }
}
