using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>The half-precision check: how well bfloat16 scores rank like float32 scores, as the
/// Spearman correlation over (up to) the first <see cref="MaxTrain"/> training examples.</summary>
public static class HalfPrecisionCheck
{
    public const int MaxTrain = 2000;

    /// <summary>Scores the first training examples with <paramref name="float32"/> (the same method in
    /// float32) and correlates them with the same columns of <paramref name="bfloat16Scores"/>
    /// ([n_query, n_train], as written). Returns the correlation and how many examples it covers.</summary>
    public static (double Spearman, int TrainCount) Compare(IAttributionMethod float32, Tensor bfloat16Scores, IDataset queries, IDataset train)
    {
        int n = Math.Min(MaxTrain, train.Count);
        var fp32 = float32.PairwiseMatrix(queries, SubsetDataset.Range(train, 0, n));
        var bf16 = bfloat16Scores.narrow(1, 0, n);
        double rho = Ranking.Spearman(fp32.to(ScalarType.Float64).flatten().data<double>().ToArray(),
            bf16.to(ScalarType.Float64).flatten().data<double>().ToArray());
        return (rho, n);
    }
}
