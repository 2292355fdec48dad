using InfluenceSharp.Data;

namespace InfluenceSharp.Methods;

/// <summary>
/// A method whose pairwise score is linear in the query's measurement gradient, score(q, i) =
/// ∇f(q)ᵀ A ∇L(z_i) with A independent of q, can score a weighted sum of queries,
/// s_i = Σ_q w_q score(q, i) = (Σ_q w_q ∇f(q))ᵀ A ∇L(z_i), with one solve instead of one per query.
/// Validation attribution (curation) uses it when a method offers it.
/// </summary>
public interface IWeightedQueryAttribution
{
    /// <summary>s_i = Σ_q w_q score(q, i) for every training example, in float64.</summary>
    double[] WeightedScores(IDataset queries, double[] weights, IDataset train);
}
