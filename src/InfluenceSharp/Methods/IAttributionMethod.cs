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
}
