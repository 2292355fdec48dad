using InfluenceSharp.Data;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.RelatIF;

/// <summary>
/// RelatIF (Barshan et al. 2020), the ℓ-relative influence: an influence function's score divided by
/// the square root of the training example's self-influence term,
/// score(q, z) = ∇f(q)ᵀ H⁻¹ ∇L(z) / √(∇L(z)ᵀ H⁻¹ ∇L(z)), so that examples whose influence is large
/// only because they are unusual (large self-influence: outliers, mislabeled examples) no longer
/// dominate every query's ranking. Wraps any influence method with a self-influence (the base's H⁻¹);
/// self-influence terms ≤ 0 (an indefinite H) are floored at 10⁻¹² × the largest one.
/// Self-influence of RelatIF itself: √(self-influence of the base).
/// </summary>
public sealed class RelatIF : IAttributionMethod, IDisposable
{
    private readonly IAttributionMethod inner;
    private (IDataset Data, int Count, double[] Norms)? cached;

    public RelatIF(IAttributionMethod inner) { this.inner = inner; }

    public string Name => "relatif";
    public IAttributionMethod Base => inner;

    /// <summary>√ of the base's self-influence per training example (floored; see the class summary).</summary>
    public double[] Norms(IDataset train)
    {
        if (cached is { } c && ReferenceEquals(c.Data, train) && c.Count == train.Count) return c.Norms;
        var self = inner.SelfInfluence(train);
        double max = self.Length == 0 ? 0 : self.Max();
        double floor = max > 0 ? 1e-12 * max : 1e-300;
        var norms = self.Select(s => Math.Sqrt(Math.Max(s, floor))).ToArray();
        cached = (train, train.Count, norms);
        return norms;
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var norms = Norms(train);
        inner.Pairwise(queries, train, (off, block) =>
        {
            using var scope = NewDisposeScope();
            var d = torch.tensor(norms.AsSpan(off, (int)block.shape[1]).ToArray(), dtype: ScalarType.Float64);
            sink(off, (block.to(ScalarType.Float64) / d.unsqueeze(0)).to(block.dtype));
        });
    }

    public double[] SelfInfluence(IDataset train) => Norms(train).ToArray();

    public void Dispose() { if (inner is IDisposable d) d.Dispose(); }
}
