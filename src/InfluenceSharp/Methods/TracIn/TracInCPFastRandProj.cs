using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Diagnostics;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

public sealed record TracInRandProjOptions : FeatureRunOptions
{
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }
    /// <summary>The seeded projection. Default: Kronecker (per layer P_gᵀ G P_a, 16×64), Rademacher.</summary>
    public ProjectionOptions Projection { get; init; } = new();
}

/// <summary>
/// TracIn with random projections (Captum's TracInCPFastRandProj, here over any tracked layers):
/// each example becomes one vector concat_c √η_c · P(∇L(θ_c, z)), where P is a seeded projection
/// scaled so that E[P Pᵀ] = I — per layer vec(P_gᵀ G P_a) (Kronecker layout, default) or a JL
/// projection of the whole tracked gradient (dense layout). Inner products of these vectors are
/// unbiased estimates of TracInCP, so scoring is one GEMM per block and nearest-neighbour search over
/// the stored vectors is possible. The same P is used at every checkpoint.
/// </summary>
public sealed class TracInCPFastRandProj : FeatureMethod
{
    private readonly TracInGradientFeaturizer featurizer;

    public TracInCPFastRandProj(IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask? task = null, TracInRandProjOptions? options = null, Profiler? profiler = null)
        : base(options ?? new TracInRandProjOptions(), profiler)
    {
        Options = options ?? new TracInRandProjOptions();
        featurizer = new TracInGradientFeaturizer("tracin-proj", checkpoints, task ?? new ClassificationTask(), Options.Layers, Options.Projection);
    }

    public override string Name => "tracin-proj";
    public TracInRandProjOptions Options { get; }
    public override IFeaturizer Featurizer => featurizer;
    public IReadOnlyList<Gradients.TrackedLayer> Layers => featurizer.Layers;
    /// <summary>Width of one example's vector: checkpoints × projected dimension.</summary>
    public long Dim => featurizer.Dim;
    protected override Device Device => featurizer.Device;

    /// <summary>The stacked projected vectors of a data set [n, Dim] (training side: loss gradients;
    /// <paramref name="asQuery"/>: the task's query measurement) for nearest-neighbour search.</summary>
    public Tensor Embed(IDataset data, bool asQuery = false)
    {
        var f = asQuery ? QueryFeatures(data) : TrainFeatures(data);
        return f["features"];
    }

    protected override Tensor PrepareQueries(Dictionary<string, Tensor> q) => q["features"].to(Device);
    protected override Tensor ScoreBlock(Tensor q, FeatureBlock block) => q.matmul(block.Features.to(Device).mT);
    public override bool HasInnerProductForm => true;
    protected override Tensor IndexRows(FeatureBlock block) => block.Features;
    protected override Tensor SelfBlock(FeatureBlock block) => block.Features.to(Device).square().sum(1);

    public override void Dispose() { featurizer.Dispose(); base.Dispose(); }
}
