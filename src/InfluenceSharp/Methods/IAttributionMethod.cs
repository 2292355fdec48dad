using InfluenceSharp.Data;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>
/// The one interface every attribution method implements (influence functions, TracIn, TRAK), so
/// that top-k, evaluations and reports work for all of them. Scores follow one convention:
/// [n_query, n_train], positive = the training example helps the query.
/// </summary>
public interface IAttributionMethod
{
    string Name { get; }

    /// <summary>Streams pairwise scores over the training set: sink(trainOffset, block) receives
    /// float32 CPU blocks [n_query, block_size] in order. Never holds the whole matrix. A block is
    /// disposed after the call; keep a copy with block.clone().DetachFromDisposeScope().</summary>
    void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink);

    /// <summary>Self-influence of every training example (high = unusual, often mislabeled).</summary>
    double[] SelfInfluence(IDataset train);
}

public static class AttributionMethodExtensions
{
    /// <summary>The whole score matrix [n_query, n_train] in memory (float32), for small problems.</summary>
    public static Tensor PairwiseMatrix(this IAttributionMethod method, IDataset queries, IDataset train)
    {
        var blocks = new List<Tensor>();
        method.Pairwise(queries, train, (_, block) => blocks.Add(block.detach().clone().DetachFromDisposeScope()));
        var m = torch.cat(blocks, 1);
        foreach (var b in blocks) b.Dispose();
        return m;
    }

    /// <summary>The whole score matrix [n_query, n_train] (float32), the queries scored
    /// <paramref name="queryBlock"/> at a time so that what the method holds per query is bounded
    /// by one block (see <see cref="Scores.QueryBlocks"/>); each block passes over the training set once.</summary>
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
            var topk = new Scores.StreamingTopK(len, k);
            method.Pairwise(block, train, (off, scores) => topk.Add(scores, off));
            parts.Add(topk.Result());
        }
        return new TopKResult(parts.SelectMany(r => r.Proponents).ToArray(), parts.SelectMany(r => r.ProponentScores).ToArray(),
            parts.SelectMany(r => r.Opponents).ToArray(), parts.SelectMany(r => r.OpponentScores).ToArray());
    }
}
