using InfluenceSharp.Features;
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
}

/// <summary>
/// TracInCP (Pruthi et al. 2020): score(q, z) = Σ_c η_c ∇L(θ_c, q)·∇L(θ_c, z) over the tracked layers,
/// self-influence Σ_c η_c ‖∇L(θ_c, z)‖². Exact: per checkpoint and batch one forward pass and one
/// autograd.grad; Linear gradients stay rank-one (scores (G_q G_zᵀ)⊙(A_q A_zᵀ), two GEMMs), Conv2d
/// gradients are formed per example by one batched GEMM. The query side uses the task's query
/// measurement (loss by default), the training side the training loss; positive = helpful.
/// </summary>
public sealed class TracInCP : FeatureMethod
{
    private readonly TracInGradientFeaturizer featurizer;
    private readonly TracInLayout layout;
    private readonly string name;

    public TracInCP(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask? task = null, TracInOptions? options = null, Profiler? profiler = null)
        : this(checkpoints, task, options, profiler, "tracin-cp") { }

    internal TracInCP(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask? task, TracInOptions? options, Profiler? profiler, string name)
        : base(options ?? new TracInOptions(), profiler)
    {
        Options = options ?? new TracInOptions();
        this.name = name;
        featurizer = new TracInGradientFeaturizer("tracin-gradients", checkpoints, task ?? new ClassificationTask(), Options.Layers, projection: null);
        layout = new TracInLayout(featurizer.Layout.Segments, featurizer.Layout.Weights, Options.Normalize);
    }

    public override string Name => name;
    public TracInOptions Options { get; }
    public override IFeaturizer Featurizer => featurizer;
    public IReadOnlyList<Gradients.TrackedLayer> Layers => featurizer.Layers;
    protected override Device Device => featurizer.Device;

    protected override Tensor PrepareQueries(Dictionary<string, Tensor> q) => q["features"].to(Device);
    protected override Tensor ScoreBlock(Tensor q, FeatureBlock block) => layout.Pairwise(q, block.Features.to(Device));
    protected override Tensor SelfBlock(FeatureBlock block) => layout.Self(block.Features.to(Device));
    /// <summary>Unnormalised scores are inner products of the expanded rows (vec(g aᵀ) per factored
    /// segment, times η_c): Σ over segments of GLen·ALen wide.</summary>
    public override bool HasInnerProductForm => !layout.Normalize;
    protected override long IndexDim => layout.ExpandedDim;
    protected override Tensor IndexRows(FeatureBlock block) => layout.Expand(block.Features.to(Device), weighted: true);
    protected override Tensor IndexQueryRows(Tensor prepared) => layout.Expand(prepared, weighted: false);

    public override void Dispose() { featurizer.Dispose(); base.Dispose(); }
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
