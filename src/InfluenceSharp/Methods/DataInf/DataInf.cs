using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.DataInf;

/// <summary>Settings of <see cref="DataInf"/>.</summary>
public sealed record DataInfOptions
{
    /// <summary>λ_l per layer = this × the mean over training examples and parameters of the layer's
    /// squared gradient entries, (1/(n·d_l)) Σ_i ‖g_{i,l}‖² (DataInf's choice, 0.1).</summary>
    public double DampingScale { get; init; } = 0.1;
    /// <summary>An absolute λ for every layer instead (null = the scaled one above).</summary>
    public double? Damping { get; init; }
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }
    /// <summary>Training examples per attribution batch (the command line's --batch-size).</summary>
    public int TrainBatchSize { get; init; } = 256;
    public int QueryBatchSize { get; init; } = 128;
    public IProgress<ProgressUpdate>? Progress { get; init; }
}

/// <summary>
/// DataInf (Kwon et al. 2024): influence functions whose per-layer inverse curvature has a closed
/// form. With per-example gradients g_i of layer l and the empirical Fisher G_l = (1/n) Σ g_i g_iᵀ,
/// (G_l + λ_l I)⁻¹ is replaced by the mean of the rank-one inverses
/// (1/n) Σ_i (g_i g_iᵀ + λ_l I)⁻¹ = (1/(nλ_l)) Σ_i (I − g_i g_iᵀ / (λ_l + ‖g_i‖²)) (Sherman–Morrison;
/// exact when n = 1), so H⁻¹v = (1/λ_l)(v − (1/n) Σ_i (g_i·v)/(λ_l + ‖g_i‖²) g_i) costs two passes
/// over the training gradients and no matrix. Scores Σ_l ∇f(q)_lᵀ H_l⁻¹ ∇L(z)_l, positive = helpful.
/// Self-influence solves each training batch as queries (one pass over the training set per batch).
/// </summary>
public sealed class DataInf : IAttributionMethod
{
    private readonly PerExampleGradients gradients;
    private readonly List<TrackedLayer> layers;
    private readonly long[] sizes;
    private (IDataset Data, int Count, double[] Lambdas, Tensor Weights)? prepared;  // Weights [n, L]: 1/(λ_l + ‖g_{i,l}‖²)
    private (IDataset Queries, int Count, Tensor Solved)? cachedQueries;

    public DataInf(nn.Module<Tensor, Tensor> model, IAttributionTask task, DataInfOptions? options = null)
    {
        Options = options ?? new DataInfOptions();
        if (!(Options.DampingScale > 0) || Options.Damping is { } d && !(d > 0))
            throw new InfluenceSharpException("datainf: the damping must be positive");
        layers = TrackedLayer.Find(model, Options.Layers);
        if (layers.Count == 0) throw new InfluenceSharpException($"datainf: no Linear or Conv2d layer matches '{Options.Layers}'");
        gradients = new PerExampleGradients(model, task, layers);
        sizes = layers.Select(l => l.NumParams).ToArray();
    }

    public string Name => "datainf";
    public DataInfOptions Options { get; }
    public IReadOnlyList<TrackedLayer> Layers => layers;

    /// <summary>The λ_l each layer uses (computed from the training gradients on first use).</summary>
    public double[] Lambdas(IDataset train) => Prepare(train).Lambdas;

    private Tensor[] Split(Tensor g)
    {
        var parts = new Tensor[sizes.Length];
        long off = 0;
        for (int l = 0; l < sizes.Length; l++) { parts[l] = g.narrow(1, off, sizes[l]); off += sizes[l]; }
        return parts;
    }

    private (IDataset Data, int Count, double[] Lambdas, Tensor Weights) Prepare(IDataset train)
    {
        if (prepared is { } p && ReferenceEquals(p.Data, train) && p.Count == train.Count) return p;
        prepared?.Weights.Dispose();
        var norms = new List<Tensor>();
        using var bar = ProgressReporter.Start(Options.Progress, "datainf gradient norms", train.Count);
        gradients.ForEachBatch(train, Options.TrainBatchSize, false, (off, g) =>
        {
            norms.Add(torch.stack(Split(g).Select(x => x.square().sum(new long[] { 1 })).ToArray(), 1).cpu().MoveToOuterDisposeScope());
            bar?.Update(off + g.shape[0]);
        });
        var sq = torch.cat(norms, 0);                                    // [n, L]
        foreach (var t in norms) t.Dispose();
        var lambdas = Enumerable.Range(0, sizes.Length).Select(l =>
            Options.Damping ?? Options.DampingScale * sq.select(1, l).mean().item<double>() / sizes[l]).ToArray();
        foreach (var (lam, l) in lambdas.Select((x, i) => (x, i)))
            if (!(lam > 0)) throw new InfluenceSharpException($"datainf: layer '{layers[l].Name}' has zero gradients on the training set (λ = 0); give an absolute damping");
        using var lamT = torch.tensor(lambdas, dtype: ScalarType.Float64);
        var weights = (sq + lamT).reciprocal_();
        sq.Dispose();
        prepared = (train, train.Count, lambdas, weights);
        return prepared.Value;
    }

    /// <summary>H⁻¹V per layer for rows V [m, P] (float64), with the training set's gradients.</summary>
    public Tensor InverseHvp(Tensor v, IDataset train)
    {
        var (_, _, lambdas, weights) = Prepare(train);
        v = v.to(ScalarType.Float64, gradients.Device);
        var vs = Split(v);
        var acc = vs.Select(x => torch.zeros_like(x)).ToArray();
        var w = weights.to(gradients.Device);
        gradients.ForEachBatch(train, Options.TrainBatchSize, false, (off, g) =>
        {
            var gs = Split(g);
            using var one = 1.0.ToScalar();
            for (int l = 0; l < gs.Length; l++)
            {
                var coef = vs[l].matmul(gs[l].mT) * w.narrow(0, off, g.shape[0]).select(1, l).unsqueeze(0);   // [m, b]
                acc[l].add_(coef.matmul(gs[l]), one);
            }
        });
        int n = train.Count;
        var result = torch.cat(Enumerable.Range(0, vs.Length).Select(l =>
        {
            using var negInvN = (-1.0 / n).ToScalar();
            using var invLam = (1.0 / lambdas[l]).ToScalar();
            return vs[l].add(acc[l], alpha: negInvN).mul_(invLam);
        }).ToArray(), 1);
        foreach (var a in acc) a.Dispose();
        if (!ReferenceEquals(w, weights)) w.Dispose();
        return result;
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var solved = SolvedQueries(queries, train);
        using var bar = ProgressReporter.Start(Options.Progress, "datainf scores", train.Count);
        gradients.ForEachBatch(train, Options.TrainBatchSize, false, (off, g) =>
        {
            sink(off, solved.matmul(g.mT).to(ScalarType.Float32).cpu());
            bar?.Update(off + g.shape[0]);
        });
    }

    public double[] SelfInfluence(IDataset train)
    {
        var result = new double[train.Count];
        using var bar = ProgressReporter.Start(Options.Progress, "datainf self-influence", train.Count);
        for (int off = 0; off < train.Count; off += Options.TrainBatchSize)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(off, Math.Min(Options.TrainBatchSize, train.Count - off)).ToArray();
            var g = gradients.All(new SubsetDataset(train, idx), Options.TrainBatchSize, query: false);
            var x = InverseHvp(g, train);
            (x * g).sum(new long[] { 1 }).cpu().data<double>().ToArray().CopyTo(result, off);
            bar?.Update(off + idx.Length);
        }
        return result;
    }

    private Tensor SolvedQueries(IDataset queries, IDataset train)
    {
        if (cachedQueries is { } c && ReferenceEquals(c.Queries, queries) && c.Count == queries.Count) return c.Solved;
        cachedQueries?.Solved.Dispose();
        using var scope = NewDisposeScope();
        var solved = InverseHvp(gradients.All(queries, Options.QueryBatchSize, query: true), train).DetachFromDisposeScope();
        cachedQueries = (queries, queries.Count, solved);
        return solved;
    }
}
