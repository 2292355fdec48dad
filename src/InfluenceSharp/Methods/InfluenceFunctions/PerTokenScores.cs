using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// How much each token of a training sequence contributes to a query's influence score (as
/// Kronfluence's per-token scores): a tracked layer's gradient of a sequence is Σ_t g_t a_tᵀ over
/// its positions, so score(q, z) = Σ_layers ⟨P_q, Σ_t g_t a_tᵀ⟩ = Σ_t Σ_layers g_tᵀ P_q a_t with
/// P_q = (H + λI)⁻¹∇f(q) the preconditioned query gradient; the term of position t is that token's
/// score. g_t is the gradient of the whole sequence's loss at position t (through attention it
/// includes later tokens' losses), and the terms add up to the sequence's score exactly.
/// </summary>
public static class PerTokenScores
{
    /// <summary>Scores [n_query, n_train, T] (float64) of every query against every training
    /// sequence, per input position, with the factors' preconditioner (damping: the factors'
    /// heuristic when null).</summary>
    public static Tensor Compute(nn.Module<Tensor, Tensor> model, IAttributionTask task, Factors factors, IDataset queries, IDataset train,
        double? damping = null, int batchSize = 64)
    {
        model.eval();
        var layers = TrackedLayer.Find(model).Where(l => factors.Manifest.Layers.Any(f => f.Name == l.Name)).ToList();
        if (!FactorsManifest.ShapesOf(layers).SequenceEqual(factors.Manifest.Layers))
            throw new InfluenceSharpException("per-token scores: the factors are for other layers than the model's");
        var p0 = model.parameters().First();
        var pre = factors.Layers.Select(f => f.Prepare(damping, p0.dtype, p0.device)).ToList();
        try
        {
            using var capture = new GradientCapture(model, layers);
            var qIdx = Enumerable.Range(0, queries.Count).ToArray();
            var pq = new Tensor[layers.Count];
            using (var scope = NewDisposeScope())
            {
                var qy = queries.Targets(qIdx, p0.device);
                var (_, qb) = capture.Run(model, queries.Inputs(qIdx, p0.device), l => task.QueryMeasure(l, qy));
                for (int i = 0; i < layers.Count; i++) pq[i] = pre[i].Apply(qb[i].PerExample()).MoveToOuterDisposeScope();   // [q, Out, In]
            }
            var parts = new List<Tensor>();
            var all = Enumerable.Range(0, train.Count).ToArray();
            for (int b = 0; b < train.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(batchSize, train.Count - b));
                var y = train.Targets(span, p0.device);
                var (_, lbs) = capture.Run(model, train.Inputs(span, p0.device), l => task.TrainLoss(l, y));
                Tensor? total = null;
                for (int i = 0; i < layers.Count; i++)
                {
                    // Σ_o,i g[b,t,o] P[q,o,i] a[b,t,i] -> [q, b, T]
                    var lb = lbs[i];
                    Tensor s;
                    if (lb.Ids is { } ids)
                    {
                        // One-hot inputs: column x_t of P, Σ_o g[b,t,o] P[q,o,x_t] (nothing of size In).
                        long nb = lb.BatchSize, t = lb.Positions;
                        var cols = pq[i].index_select(2, ids.reshape(-1)).view(pq[i].shape[0], pq[i].shape[1], nb, t);   // [q, Out, b, T]
                        s = cols.mul(lb.G.permute(2, 0, 1).unsqueeze(0)).sum(new long[] { 1 });
                    }
                    else
                    {
                        var gp = lb.G.unsqueeze(0).matmul(pq[i].unsqueeze(1));                 // [q, b, T, In]
                        s = gp.mul(lb.A.unsqueeze(0)).sum(new long[] { 3 });
                    }
                    total = total is null ? s : total + s;
                }
                parts.Add(total!.to(ScalarType.Float64).cpu().MoveToOuterDisposeScope());
            }
            foreach (var t in pq) t.Dispose();
            var result = torch.cat(parts, 1);
            foreach (var t in parts) t.Dispose();
            return result;
        }
        finally { foreach (var p in pre) p.Dispose(); }
    }
}
