using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// Influence-function scores with fitted factors: score(q, z) = ∇f(q)ᵀ (H + λI)⁻¹ ∇L(z), block-diagonal
/// over tracked layers. Query gradients are preconditioned once; training gradients are streamed in
/// batches and scored with one GEMM per layer (or, with a rank-r query approximation, two thin GEMMs
/// against the batch's activations and output gradients, never forming per-example gradients).
/// </summary>
public sealed class InfluenceFunction : IAttributionMethod
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly IAttributionTask task;
    private readonly Factors factors;
    private readonly ScoreOptions o;
    private readonly Profiler profiler;
    private readonly List<TrackedLayer> layers;

    public InfluenceFunction(nn.Module<Tensor, Tensor> model, IAttributionTask task, Factors factors, ScoreOptions? options = null, Profiler? profiler = null)
    {
        this.model = model; this.task = task; this.factors = factors; o = options ?? new ScoreOptions(); this.profiler = profiler ?? new Profiler();
        var filter = string.Join(",", factors.Manifest.Layers.Select(l => $"{l.Name}:{l.Out}x{l.In}"));
        layers = TrackedLayer.Find(model).Where(l => factors.Manifest.Layers.Any(f => f.Name == l.Name)).ToList();
        var shapes = FactorsManifest.ShapesOf(layers);
        if (!shapes.SequenceEqual(factors.Manifest.Layers))
            throw new InfluenceSharpException($"factors are for layers {filter} but the model's layers are {(FactorsManifest.ShapesOf(TrackedLayer.Find(model)) is { Length: > 0 } all ? string.Join(",", all.Select(s => $"{s.Name}:{s.Out}x{s.In}")) : "(none: no Linear or Conv2d layer)")} (factors fit on another architecture?)");
        string fp = ModelFingerprint.Of(model);
        if (fp != factors.Manifest.ModelFingerprint)
            throw new InfluenceSharpException($"factors were fit on model {factors.Manifest.ModelFingerprint} but this model is {fp} (factors from another checkpoint)");
        if (o.QueryRank < 0) throw new InfluenceSharpException($"--query-rank {o.QueryRank}: must be >= 0");
    }

    public string Name => factors.Strategy.ToString().ToLowerInvariant();
    public IReadOnlyList<TrackedLayer> Layers => layers;

    private Device Device => model.parameters().First().device;
    private ScalarType Dtype => model.parameters().First().dtype;

    private List<Preconditioner> Prepare() =>
        factors.Layers.Select(f => f.Prepare(o.Damping, Dtype, Device)).ToList();

    /// <summary>Per-token scores [n_query, n_train, T] of <see cref="PerTokenScores"/> with this
    /// method's model, task, factors and damping (they add up to <see cref="Pairwise"/>'s scores).</summary>
    public Tensor PerToken(IDataset queries, IDataset train) =>
        InfluenceFunctions.PerTokenScores.Compute(model, task, factors, queries, train, o.Damping);

    /// <summary>The damping each layer uses (the heuristic or the user's value).</summary>
    public double[] Dampings() => factors.Layers.Select(f => o.Damping ?? f.HeuristicDamping()).ToArray();

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink) =>
        PairwiseByLayer(queries, train, (off, perLayer) =>
        {
            using var s = NewDisposeScope();
            sink(off, torch.stack(perLayer).sum(new long[] { 0 }));
        });

    /// <summary>Pairwise scores per tracked layer: sink(trainOffset, [one [n_query, block] per layer]).</summary>
    public void PairwiseByLayer(IDataset queries, IDataset train, Action<int, Tensor[]> sink)
    {
        model.eval();
        using var pre = new DisposableList<Preconditioner>(Prepare());
        using var q = profiler.Time("Precondition Queries", () => PreconditionQueries(queries, pre.Items, train.Count));
        ForEachTrainBatch(train, "Compute Pairwise Score", "pairwise scores", (offset, lbs) =>
            sink(offset, lbs.Select((lb, i) => q.Score(i, lb, o.MemoryBytes).to(ScalarType.Float32).cpu()).ToArray()));
    }

    public double[] SelfInfluence(IDataset train)
    {
        model.eval();
        using var pre = new DisposableList<Preconditioner>(Prepare());
        var result = new double[train.Count];
        ForEachTrainBatch(train, "Compute Self-Influence Score", "self-influence", (offset, lbs) =>
        {
            Tensor total = pre.Items[0].SelfScores(lbs[0], o.MemoryBytes);
            for (int i = 1; i < lbs.Length; i++) total = total + pre.Items[i].SelfScores(lbs[i], o.MemoryBytes);
            total.to(ScalarType.Float64).cpu().data<double>().CopyTo(result, offset);
        });
        return result;
    }

    /// <summary>Streams the training set in batches through the tracked layers (training loss with
    /// the true labels), inside a dispose scope per batch, with progress reports and a profiler stage.</summary>
    private void ForEachTrainBatch(IDataset train, string stage, string label, Action<int, LayerBatch[]> body)
    {
        using var capture = new GradientCapture(model, layers);
        using var bar = ProgressReporter.Start(o.Progress, label, train.Count);
        using (profiler.Stage(stage))
        {
            var all = Enumerable.Range(0, train.Count).ToArray();
            for (int b = 0; b < train.Count; b += o.TrainBatchSize)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(o.TrainBatchSize, train.Count - b));
                var y = train.Targets(span, Device);
                var (_, lbs) = capture.Run(model, train.Inputs(span, Device), logits => task.TrainLoss(logits, y));
                body(b, lbs);
                bar?.Update(b + span.Length);
            }
        }
    }

    /// <summary>Forces (true) or forbids (false) scoring in the eigenbasis for every layer that has one;
    /// null = by cost (tests run both).</summary>
    internal bool? EigenbasisScoring { get; init; }

    /// <summary>Whether a layer is scored in its eigenbasis: the training gradients rotated into it
    /// (Linear: g Q_S and a Q_A, 2(Out² + In²) per example) instead of every preconditioned query
    /// rotated back (2(Out²·In + Out·In²) per query). Kronfluence rotates the queries back; with
    /// 100 queries against 5,000 training examples on a 128×785 layer the training side is 3× cheaper.
    /// Conv layers (T positions) keep the rotation back.</summary>
    private bool InBasis(TrackedLayer layer, Preconditioner p, long nQuery, long nTrain)
    {
        if (p.QA is null || layer.SeveralPositions) return false;
        if (EigenbasisScoring is { } forced) return forced;
        double o = layer.Out, i = layer.In;
        return nTrain * 2 * (o * o + i * i) < nQuery * 2 * (o * o * i + o * i * i);
    }

    /// <summary>H⁻¹∇f(q) for every query and layer, optionally as rank-r factors; for layers scored in
    /// the eigenbasis (<see cref="InBasis"/>) kept there, with the bases to rotate training batches.</summary>
    private PreconditionedQueries PreconditionQueries(IDataset queries, List<Preconditioner> pre, long nTrain)
    {
        var inBasis = layers.Select((l, i) => InBasis(l, pre[i], queries.Count, nTrain)).ToArray();
        var perLayer = layers.Select(_ => new List<Tensor>()).ToList();
        using (var capture = new GradientCapture(model, layers))
        {
            var all = Enumerable.Range(0, queries.Count).ToArray();
            for (int b = 0; b < queries.Count; b += o.QueryBatchSize)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(o.QueryBatchSize, queries.Count - b));
                var y = queries.Targets(span, Device);
                var (_, lbs) = capture.Run(model, queries.Inputs(span, Device), logits => task.QueryMeasure(logits, y));
                for (int i = 0; i < lbs.Length; i++)
                    foreach (var c in lbs[i].Chunks(o.MemoryBytes))
                    {
                        using var slice = NewDisposeScope();     // a slice's temporaries freed before the next
                        perLayer[i].Add((inBasis[i] ? pre[i].ApplyInBasis(c) : pre[i].Apply(c.PerExample())).MoveToOuterDisposeScope().MoveToOuterDisposeScope());
                    }
            }
        }
        var full = perLayer.Select(l => { var t = torch.cat(l, 0); foreach (var x in l) x.Dispose(); return t; }).ToList();
        var bases = pre.Select((p, i) => inBasis[i] ? (p.QA!, p.QS!) : ((Tensor, Tensor)?)null).ToArray();
        return new PreconditionedQueries(full, layers.Select(l => !l.SeveralPositions).ToArray(), o.QueryRank, o.BFloat16, queries.Count, bases);
    }

    /// <summary>Preconditioned query gradients per layer, either exact [n_q, Out·In] or as rank-r
    /// factors U [Out, n_q·r], V [In, n_q·r] (Linear layers only; conv layers stay exact).</summary>
    private sealed class PreconditionedQueries : IDisposable
    {
        private readonly Tensor?[] flat;
        private readonly (Tensor U, Tensor V)?[] lowRank;
        private readonly (Tensor QA, Tensor QS)?[] bases;     // layers whose queries stay in the eigenbasis (owned by the preconditioners)
        private readonly int rank, nq;
        private readonly bool bf16;

        public PreconditionedQueries(List<Tensor> perLayer, bool[] lowRankAllowed, int rank, bool bf16, int nq, (Tensor QA, Tensor QS)?[] bases)
        {
            this.rank = rank; this.bf16 = bf16; this.nq = nq; this.bases = bases;
            flat = new Tensor?[perLayer.Count];
            lowRank = new (Tensor, Tensor)?[perLayer.Count];
            for (int i = 0; i < perLayer.Count; i++)
            {
                var p = perLayer[i];                        // [n_q, Out, In]
                long outF = p.shape[1], inF = p.shape[2];
                if (lowRankAllowed[i] && rank > 0 && rank < Math.Min(outF, inF))
                {
                    using var scope = NewDisposeScope();
                    var (u, s, vh) = torch.linalg.svd(p, fullMatrices: false);
                    var ur = u.narrow(2, 0, rank) * s.narrow(1, 0, rank).unsqueeze(1);      // [n_q, Out, r]
                    var vr = vh.narrow(1, 0, rank).mT;                                     // [n_q, In, r]
                    var uCat = ur.permute(1, 0, 2).reshape(outF, nq * rank).contiguous();
                    var vCat = vr.permute(1, 0, 2).reshape(inF, nq * rank).contiguous();
                    lowRank[i] = (Cast(uCat).MoveToOuterDisposeScope(), Cast(vCat).MoveToOuterDisposeScope());
                    p.Dispose();
                }
                else
                {
                    flat[i] = Cast(p.reshape(nq, -1)).contiguous();
                    if (!ReferenceEquals(flat[i], p)) p.Dispose();
                }
            }
        }

        private Tensor Cast(Tensor t) => bf16 ? t.to(ScalarType.BFloat16) : t;

        /// <summary>Scores [n_q, B] of one layer's preconditioned queries against a training batch.</summary>
        public Tensor Score(int layer, LayerBatch lb, long memoryBytes)
        {
            // Queries kept in the eigenbasis: rotate the batch instead (g Q_S, a Q_A at every position).
            if (bases[layer] is { } b) lb = new LayerBatch(lb.Layer, lb.ATimes(b.QA), lb.G.matmul(b.QS));
            if (lowRank[layer] is { } lr)
            {
                // Σ_t (g_tᵀ U)(a_tᵀ V): for a rank-one layer (T = 1) two thin GEMMs, no per-example gradient.
                var gu = Cast(lb.G).matmul(lr.U);                                  // [B, T, n_q·r]
                var av = lb.IsOneHot ? lb.ATimes(lr.V) : Cast(lb.A).matmul(lr.V);                                  // [B, T, n_q·r]
                var prod = lb.RankOne ? (gu * av).squeeze(1) : (gu * av).sum(1);
                return prod.reshape(lb.BatchSize, nq, rank).sum(2).mT.to(lb.G.dtype);
            }
            var p = flat[layer]!;                                                 // [n_q, Out·In]
            if (lb.RankOne && !lb.IsOneHot)
            {
                // g_zᵀ P_q a_z without forming g_z a_zᵀ: Y = a Pᵀ [B, n_q·Out], then contract with g.
                long outF = lb.G.shape[2], inF = lb.A.shape[2];
                var y = Cast(lb.A.squeeze(1)).matmul(p.reshape(nq * outF, inF).mT).reshape(lb.BatchSize, nq, outF);
                return y.mul_(Cast(lb.G.squeeze(1)).unsqueeze(1)).sum(2).mT.to(lb.G.dtype);
            }
            var parts = new List<Tensor>();
            foreach (var c in lb.Chunks(memoryBytes))          // [b, Out, In] slices within the memory budget
            {
                using var slice = NewDisposeScope();              // a slice's temporaries freed before the next
                parts.Add(p.matmul(Cast(c.PerExample().reshape(c.BatchSize, -1)).mT).to(lb.G.dtype).MoveToOuterDisposeScope());
            }
            return parts.Count == 1 ? parts[0] : torch.cat(parts, 1);
        }

        public void Dispose()
        {
            foreach (var f in flat) f?.Dispose();
            foreach (var l in lowRank) if (l is { } x) { x.U.Dispose(); x.V.Dispose(); }
        }
    }
}

/// <summary>Disposes every item of a list.</summary>
internal sealed class DisposableList<T> : IDisposable where T : IDisposable
{
    public DisposableList(List<T> items) { Items = items; }
    public List<T> Items { get; }
    public void Dispose() { foreach (var i in Items) i.Dispose(); }
}
