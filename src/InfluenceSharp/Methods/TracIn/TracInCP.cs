using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Diagnostics;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

public sealed record TracInOptions : FeatureRunOptions
{
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }
    /// <summary>Divide each checkpoint's gradient inner product by both gradient norms (cosine):
    /// GradCos for one checkpoint, "TracIn-cos" for several. Self-influence is then Σ_c η_c.</summary>
    public bool Normalize { get; init; }
    /// <summary>How Conv2d per-example gradients are kept: by cost per layer (default), always as the
    /// Out·In matrix, or always as per-position factors.</summary>
    public TracInConvForm ConvForm { get; init; } = TracInConvForm.Auto;
    /// <summary>Bound on the bytes of per-example gradient matrices (and feature rows of a batch) held
    /// at once: batches are split, or computed smaller, to stay within it. Default 1 GiB.</summary>
    public long MemoryBytes { get; init; } = Gradients.LayerBatch.DefaultMemoryBytes;
}

/// <summary>
/// TracInCP (Pruthi et al. 2020): score(q, z) = Σ_c η_c ∇L(θ_c, q)·∇L(θ_c, z) over the tracked layers,
/// self-influence Σ_c η_c ‖∇L(θ_c, z)‖². Exact: per checkpoint and batch one forward pass and one
/// autograd.grad; Linear gradients stay rank-one (scores (G_q G_zᵀ)⊙(A_q A_zᵀ), two GEMMs), Conv2d
/// gradients are formed per example by one batched GEMM, or kept as their per-position factors when
/// the layer has few output positions against its width (<see cref="TracInConvForm"/>). Memory is
/// bounded by <see cref="TracInOptions.MemoryBytes"/>: self-influence never forms feature rows (it
/// takes ‖∇‖² per layer from the layer batches, in slices), and feature rows are computed in batches
/// small enough to fit. The query side uses the task's query
/// measurement (loss by default), the training side the training loss; positive = helpful.
/// </summary>
public sealed class TracInCP : FeatureMethod
{
    private readonly TracInGradientFeaturizer featurizer;
    private TracInLayout? layout;
    private readonly string name;

    public TracInCP(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask? task = null, TracInOptions? options = null, Profiler? profiler = null)
        : this(checkpoints, task, options, profiler, "tracin") { }

    internal TracInCP(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask? task, TracInOptions? options, Profiler? profiler, string name)
        : base(options ?? new TracInOptions(), profiler)
    {
        Options = options ?? new TracInOptions();
        this.name = name;
        if (Options.MemoryBytes < 1) throw new InfluenceSharpException($"TracIn memory budget {Options.MemoryBytes} bytes: must be positive");
        featurizer = new TracInGradientFeaturizer("tracin-gradients", checkpoints, task ?? new ClassificationTask(), Options.Layers, projection: null, Options.ConvForm, Options.MemoryBytes);
    }

    /// <summary>The scoring layout (with the normalisation), once the featurizer's layout is bound.</summary>
    private TracInLayout Layout => layout ??= new TracInLayout(featurizer.Layout.Segments, featurizer.Layout.Weights, Options.Normalize) { MemoryBytes = Options.MemoryBytes };

    protected override void Bind(IDataset data) => featurizer.Bind(data);

    /// <summary>A batch's feature rows stay within the memory budget: for wide explicit conv
    /// gradients (ResNet-18's layer4 at 224×224: 2.4M numbers per example and layer) the batch is
    /// computed in fewer examples at a time.</summary>
    protected override int BatchSize(int requested)
    {
        long bytes = featurizer.Dim * (featurizer.Dtype == ScalarType.Float64 ? 8 : 4);
        return (int)Math.Max(1, Math.Min(requested, Options.MemoryBytes / Math.Max(1, bytes)));
    }

    /// <summary>A stored block of feature rows stays within the memory budget too: a language model's
    /// explicit gradients over every checkpoint (2 MB per sequence for a 44k-parameter GPT over 12
    /// checkpoints) would otherwise make a 4,096-row block of 8 GB.
    /// A store already on disk keeps its block size while a block stays below the 2 GB one tensor of a
    /// block file can hold (so one built before this cap, or under another budget, stays usable).</summary>
    protected override int StoreBlockSize(int requested)
    {
        int capped = BatchSize(requested);
        if (RunOptions.StoreDirectory is { } dir && FeatureStore.ExistingBlockSize(dir) is int built && built > capped
            && (long)built * featurizer.Dim * (featurizer.Dtype == ScalarType.Float64 ? 8 : 4) <= int.MaxValue)
            return built;
        return capped;
    }

    /// <summary>Self-influence straight from each batch's layer gradients
    /// (<see cref="LayerBatch.SquaredNorms"/>: per-example conv gradients in slices within the memory
    /// budget, or through position Gram matrices when cheaper), never as feature rows — unless the
    /// rows are kept in a store directory that is complete (read it) or whose blocks of rows fit the
    /// memory budget (build it, for later query sets).</summary>
    public override double[] SelfInfluence(IDataset train)
    {
        if (RunOptions.StoreDirectory is not null)
        {
            var store = OpenStore(train);
            long blockBytes = (long)store.BlockSize * featurizer.Dim * (featurizer.Dtype == ScalarType.Float64 ? 8 : 4);
            if (store.IsComplete || blockBytes <= Options.MemoryBytes) return base.SelfInfluence(train);
        }
        else Bind(train);
        var result = new double[train.Count];
        var all = Enumerable.Range(0, train.Count).ToArray();
        int batch = RunOptions.TrainBatchSize;
        using var bar = ProgressReporter.Start(RunOptions.Progress, $"{Name} self-influence", train.Count);
        using (Profiler.Stage("Compute Self-Influence Score"))
            for (int b = 0; b < train.Count; b += batch)
            {
                using var scope = TorchSharp.torch.NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(batch, train.Count - b));
                featurizer.SelfInfluence(train, span, Options.Normalize).cpu().data<double>().CopyTo(result, b);
                bar?.Update(b + span.Length);
            }
        return result;
    }

    public override string Name => name;
    public TracInOptions Options { get; }
    public override IFeaturizer Featurizer => featurizer;
    public IReadOnlyList<Gradients.TrackedLayer> Layers => featurizer.Layers;
    protected override Device Device => featurizer.Device;

    protected override Tensor PrepareQueries(Dictionary<string, Tensor> q) => q["features"].to(Device);
    protected override Tensor ScoreBlock(Tensor q, FeatureBlock block) => Layout.Pairwise(q, block.Features.to(Device));
    protected override Tensor SelfBlock(FeatureBlock block) => Layout.Self(block.Features.to(Device));
    /// <summary>Unnormalised scores are inner products of the expanded rows (vec(g aᵀ) per factored
    /// segment, times η_c): Σ over segments of GLen·ALen wide.</summary>
    public override bool HasInnerProductForm => !Options.Normalize;
    protected override long IndexDim => Layout.ExpandedDim;
    protected override Tensor IndexRows(FeatureBlock block) => Layout.Expand(block.Features.to(Device), weighted: true);
    protected override Tensor IndexQueryRows(Tensor prepared) => Layout.Expand(prepared, weighted: false);

    public override void Dispose() { featurizer.Dispose(); base.Dispose(); }

    /// <summary>TracInCP on the last Linear layer of the checkpoints' model only, named tracin-last:
    /// for a model whose last layer runs at several positions (a language model's output head), where
    /// <see cref="TracInCPFast"/>'s one-position closed form does not apply.</summary>
    public static TracInCP LastLayer(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask task, TracInOptions? options = null, Profiler? profiler = null)
    {
        TracInCheckpoint.Validate(checkpoints);
        var last = TrackedLayer.Find(checkpoints[0].Model).LastOrDefault(l => l.Type is LinearLayerType)
            ?? throw new InfluenceSharpException("tracin-last: the model has no Linear layer");
        // The layer filter matches by substring: make sure it picks this layer alone.
        var picked = TrackedLayer.Find(checkpoints[0].Model, last.Name);
        if (picked.Count != 1)
            throw new InfluenceSharpException($"tracin-last: the last Linear layer's name '{last.Name}' is part of other layers' names; use --methods tracin --layers instead");
        return new TracInCP(checkpoints, task, (options ?? new TracInOptions()) with { Layers = last.Name }, profiler, "tracin-last");
    }
}

/// <summary>GradDot: the gradient dot product ∇L(θ, q)·∇L(θ, z) at one model — TracInCP with a
/// single checkpoint and η = 1.</summary>
public static class GradDot
{
    public static TracInCP Create(nn.Module<Tensor, Tensor> model, IAttributionTask? task = null, TracInOptions? options = null, Profiler? profiler = null) =>
        new(new[] { new TracInCheckpoint(model, 1.0) }, task, (options ?? new TracInOptions()) with { Normalize = false }, profiler, "graddot");
}

/// <summary>GradCos: the cosine of the two gradients at one model — GradDot with normalised
/// gradients (self-influence is 1 for every example with a non-zero gradient).</summary>
public static class GradCos
{
    public static TracInCP Create(nn.Module<Tensor, Tensor> model, IAttributionTask? task = null, TracInOptions? options = null, Profiler? profiler = null) =>
        new(new[] { new TracInCheckpoint(model, 1.0) }, task, (options ?? new TracInOptions()) with { Normalize = true }, profiler, "gradcos");
}
