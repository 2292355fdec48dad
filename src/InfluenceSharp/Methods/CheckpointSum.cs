using InfluenceSharp.Data;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>
/// A weighted sum of attribution methods, each built on another checkpoint of one training run:
/// score(q, z) = Σ_c w_c · score_c(q, z). With influence functions and w_c = η_c (the checkpoint's
/// step size) this is the trajectory sum TracIn makes of gradient dot products, with each
/// checkpoint's own curvature: Σ_c η_c ∇f_c(q)ᵀ (H_c + λ_c I)⁻¹ ∇L_c(z).
/// Pairwise scores are streamed over blocks of the training set sized so that one block of the sum
/// stays within <see cref="BlockBytes"/>; every member scores the same block before it is passed on.
/// </summary>
public sealed class CheckpointSum : IAttributionMethod, IDisposable
{
    private readonly List<(IAttributionMethod Method, double Weight)> members;

    public CheckpointSum(string name, IEnumerable<(IAttributionMethod Method, double Weight)> members)
    {
        this.members = members.ToList();
        if (this.members.Count == 0) throw new InfluenceSharpException($"{name}: no checkpoints to sum over");
        foreach (var (m, w) in this.members)
            if (!double.IsFinite(w)) throw new InfluenceSharpException($"{name}: weight {w} of {m.Name} is not a finite number");
        Name = name;
    }

    public string Name { get; }
    public IReadOnlyList<(IAttributionMethod Method, double Weight)> Members => members;

    /// <summary>Upper bound of one block of summed pairwise scores (float32 [n_query, block]).</summary>
    public long BlockBytes { get; init; } = 256L << 20;

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        int nq = queries.Count, n = train.Count;
        int block = (int)Math.Clamp(BlockBytes / (4L * Math.Max(nq, 1)), 1, Math.Max(n, 1));
        for (int start = 0; start < n; start += block)
        {
            using var scope = NewDisposeScope();
            int m = Math.Min(block, n - start);
            IDataset part = start == 0 && m == n ? train : SubsetDataset.Range(train, start, m);
            var sum = zeros(nq, m, dtype: ScalarType.Float32);
            foreach (var (method, weight) in members)
            {
                using var w = weight.ToScalar();
                method.Pairwise(queries, part, (off, b) => sum.narrow(1, off, b.shape[1]).add_(b.to(ScalarType.Float32), w));
            }
            sink(start, sum);
        }
    }

    public double[] SelfInfluence(IDataset train)
    {
        var total = new double[train.Count];
        foreach (var (method, weight) in members)
        {
            var s = method.SelfInfluence(train);
            for (int i = 0; i < total.Length; i++) total[i] += weight * s[i];
        }
        return total;
    }

    public void Dispose()
    {
        foreach (var (m, _) in members) (m as IDisposable)?.Dispose();
    }
}
