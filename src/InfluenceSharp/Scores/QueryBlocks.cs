using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Scores;

/// <summary>
/// How many queries a pairwise scoring job scores per pass over the training set. A gradient-based
/// method holds a few vectors of the model's size per query (the query gradients, preconditioned or
/// solved, in float64), so scoring every query at once grows memory with the query count; a block
/// bounds it, at the price of one more pass over the training data per block.
/// </summary>
public static class QueryBlocks
{
    /// <summary>The memory the default block aims at for its per-query state.</summary>
    public const long BudgetBytes = 1L << 30;
    public const string BudgetText = "1 GiB";

    /// <summary>The default block: as many queries as <see cref="BudgetBytes"/> holds at two
    /// float64 vectors of <paramref name="parameterCount"/> values each, at least one.</summary>
    public static int Auto(long parameterCount)
    {
        if (parameterCount < 1) throw new ArgumentOutOfRangeException(nameof(parameterCount), parameterCount, "a model has at least one parameter");
        return (int)Math.Clamp(BudgetBytes / (2 * sizeof(double) * parameterCount), 1, int.MaxValue);
    }

    /// <summary>The progress line for a job that splits its queries, or null when one block holds them all.</summary>
    public static string? Describe(int queryCount, int block) =>
        block >= queryCount ? null
        : $"scoring {queryCount} queries in {(queryCount + block - 1) / block} blocks of {block} (--query-block): one pass over the training data per block";

    public static long ParameterCount(nn.Module model) => model.parameters().Sum(p => p.numel());

    public static long ParameterCount(Checkpoint checkpoint)
    {
        using var model = checkpoint.LoadModel();
        return ParameterCount(model);
    }

    /// <summary>The whole score matrix [n_query, n_train] (float32), the queries scored
    /// <paramref name="queryBlock"/> at a time so that what the method holds per query is bounded
    /// by one block; each block passes over the training set once.</summary>
    public static Tensor PairwiseMatrix(this IAttributionMethod method, IDataset queries, IDataset train, int queryBlock)
    {
        if (queryBlock < 1) throw new InfluenceSharpException($"query block {queryBlock}: must be at least 1");
        if (queryBlock >= queries.Count) return method.PairwiseMatrix(queries, train);
        var m = torch.empty(queries.Count, train.Count, ScalarType.Float32);
        try
        {
            for (int start = 0; start < queries.Count; start += queryBlock)
            {
                int len = Math.Min(queryBlock, queries.Count - start);
                using var rows = m.narrow(0, start, len);
                method.Pairwise(SubsetDataset.Range(queries, start, len), train, (off, block) =>
                {
                    using var target = rows.narrow(1, off, block.shape[1]);
                    target.copy_(block);
                });
            }
            return m;
        }
        catch
        {
            m.Dispose();
            throw;
        }
    }

    /// <summary>The k most helpful and most harmful training examples of each query, streamed over the
    /// training set without holding the score matrix, the queries scored <paramref name="queryBlock"/>
    /// at a time (as <see cref="PairwiseMatrix(IAttributionMethod, IDataset, IDataset, int)"/>).</summary>
    public static TopKResult TopK(this IAttributionMethod method, IDataset queries, IDataset train, int k, int queryBlock)
    {
        if (queryBlock < 1) throw new InfluenceSharpException($"query block {queryBlock}: must be at least 1");
        var parts = new List<TopKResult>();
        for (int start = 0; start < queries.Count; start += queryBlock)
        {
            int len = Math.Min(queryBlock, queries.Count - start);
            var block = start == 0 && len == queries.Count ? queries : SubsetDataset.Range(queries, start, len);
            var topk = new StreamingTopK(len, k);
            method.Pairwise(block, train, (off, scores) => topk.Add(scores, off));
            parts.Add(topk.Result());
        }
        return new TopKResult(parts.SelectMany(r => r.Proponents).ToArray(), parts.SelectMany(r => r.ProponentScores).ToArray(),
            parts.SelectMany(r => r.Opponents).ToArray(), parts.SelectMany(r => r.OpponentScores).ToArray());
    }
}
