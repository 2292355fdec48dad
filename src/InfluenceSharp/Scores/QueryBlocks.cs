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
}
