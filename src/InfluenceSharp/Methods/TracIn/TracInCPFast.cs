using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Diagnostics;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

public sealed record TracInFastOptions : FeatureRunOptions
{
    /// <summary>The final Linear layer (its output must be the logits); null = the last Linear layer.</summary>
    public string? Layer { get; init; }
    /// <summary>Append 1 to the penultimate activations so the bias gradient counts (TracIn's reference
    /// code ignores the bias: set false to match it).</summary>
    public bool IncludeBias { get; init; } = true;
    /// <summary>Store the explicit stacked vectors concat_c √η_c vec(g_c a_cᵀ) (C·K·(H+1) wide: small
    /// layers only) instead of the factors [g_c | a_c] (C·(K+H+1) wide). Scores are the same.</summary>
    public bool Stacked { get; init; }
}

/// <summary>
/// TracIn restricted to the final Linear layer with softmax cross-entropy (Captum's TracInCPFast,
/// the seeds' ImageNet notebooks): per checkpoint c, g_c = softmax − onehot = ∂loss/∂logits (computed
/// in closed form, no autograd) and a_c = the penultimate activations (+1 for the bias), so
/// score(q, z) = Σ_c η_c (g_c·g'_c)(a_c·a'_c) — the product per checkpoint, then the sum.
/// <see cref="Embed"/> gives the equivalent stacked vectors concat_c √η_c vec(g_c a_cᵀ), whose plain dot
/// products are the same scores ("stacking trick"), for nearest-neighbour search. With a margin query
/// measurement the query's g is softmax over the other classes − onehot (∂(−margin)/∂logits).
/// </summary>
public sealed class TracInCPFast : FeatureMethod
{
    private readonly LastLayerFeaturizer featurizer;
    private readonly TracInLayout layout;

    public TracInCPFast(IReadOnlyList<TracInCheckpoint> checkpoints, ClassificationTask? task = null, TracInFastOptions? options = null, Profiler? profiler = null)
        : base(options ?? new TracInFastOptions(), profiler)
    {
        Options = options ?? new TracInFastOptions();
        featurizer = new LastLayerFeaturizer(checkpoints, task ?? new ClassificationTask(), Options);
        layout = featurizer.Layout;
    }

    public override string Name => "tracin-last";
    public TracInFastOptions Options { get; }
    public override IFeaturizer Featurizer => featurizer;
    /// <summary>The final layer's name.</summary>
    public string LayerName => featurizer.LayerName;
    protected override Device Device => featurizer.Device;

    /// <summary>Per checkpoint, the factors of the last-layer gradients of a data set: G [n, K]
    /// (∂loss/∂logits, or ∂(−margin)/∂logits for margin queries) and A [n, H(+1)].</summary>
    public List<(Tensor G, Tensor A)> Factors(IDataset data, bool asQuery = false)
    {
        var f = new LastLayerFeaturizer(featurizer, stacked: false);
        using var all = new DisposingDictionary(FeatureStore.ComputeAll(f, data, asQuery ? RunOptions.QueryBatchSize : RunOptions.TrainBatchSize, asQuery));
        var x = all.Items["features"];
        return f.Layout.Segments.Select(s => (x.narrow(1, s.Start, s.GLen).clone(), x.narrow(1, s.Start + s.GLen, s.ALen).clone())).ToList();
    }

    /// <summary>The stacked vectors concat_c √η_c vec(g_c a_cᵀ) of a data set [n, C·K·(H+1)]: their dot
    /// products are the TracIn scores (for nearest-neighbour search).</summary>
    public Tensor Embed(IDataset data, bool asQuery = false)
    {
        var f = new LastLayerFeaturizer(featurizer, stacked: true);
        var all = FeatureStore.ComputeAll(f, data, asQuery ? RunOptions.QueryBatchSize : RunOptions.TrainBatchSize, asQuery);
        return all["features"];
    }

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

    private sealed class DisposingDictionary : IDisposable
    {
        public DisposingDictionary(Dictionary<string, Tensor> items) { Items = items; }
        public Dictionary<string, Tensor> Items { get; }
        public void Dispose() { foreach (var t in Items.Values) t.Dispose(); }
    }
}

/// <summary>Last-layer factors from a forward pass without autograd: a hook on the final Linear
/// captures its input; g is the closed-form derivative of the loss (or −margin) w.r.t. the logits.</summary>
internal sealed class LastLayerFeaturizer : IFeaturizer, IDisposable
{
    private readonly IReadOnlyList<TracInCheckpoint> checkpoints;
    private readonly ClassificationTask task;
    private readonly bool includeBias, stacked;
    private readonly TrackedLayer[] finalLayers;
    private readonly Dictionary<string, string> settings;

    public LastLayerFeaturizer(IReadOnlyList<TracInCheckpoint> checkpoints, ClassificationTask task, TracInFastOptions o)
    {
        TracInCheckpoint.Validate(checkpoints);
        this.checkpoints = checkpoints; this.task = task; includeBias = o.IncludeBias; stacked = o.Stacked;
        var p0 = checkpoints[0].Model.parameters().First();
        Device = p0.device;
        finalLayers = new TrackedLayer[checkpoints.Count];
        TrackedLayer? first = null;
        for (int c = 0; c < checkpoints.Count; c++)
        {
            var layer = FinalLinear(checkpoints[c].Model, o.Layer);
            if (first is not null && (layer.Name != first.Name || layer.Out != first.Out || layer.In != first.In))
                throw new InfluenceSharpException($"checkpoint {checkpoints[c].Source ?? c.ToString()}: final layer {layer} differs from the first checkpoint's {first} (another architecture?)");
            first ??= layer;
            finalLayers[c] = layer;
        }
        Layer = first!;
        ModelFingerprints = TracInCheckpoint.Fingerprints(checkpoints.Select(c => c.Model));
        settings = new Dictionary<string, string>
        {
            ["layer"] = $"{Layer.Name}:{Layer.Out}x{Layer.In}",
            ["include_bias"] = includeBias.ToString(),
            ["step_sizes"] = string.Join(",", checkpoints.Select(c => c.StepSize.ToString("R", CultureInfo.InvariantCulture))),
        };
        Layout = MakeLayout();
    }

    /// <summary>The same checkpoints, with the other row form (factored or stacked).</summary>
    public LastLayerFeaturizer(LastLayerFeaturizer other, bool stacked)
    {
        checkpoints = other.checkpoints; task = other.task; includeBias = other.includeBias; this.stacked = stacked;
        finalLayers = other.finalLayers; Device = other.Device; Layer = other.Layer;
        ModelFingerprints = other.ModelFingerprints; settings = other.settings;
        Layout = MakeLayout();
    }

    private TracInLayout MakeLayout()
    {
        long k = Layer.Out, h = ActivationDim;
        var segs = new List<Segment>();
        for (int c = 0; c < checkpoints.Count; c++)
            segs.Add(stacked ? new Segment(c, c * k * h, k * h, 0) : new Segment(c, c * (k + h), k, h));
        return new TracInLayout(segs, checkpoints.Select(cp => stacked ? 1.0 : cp.StepSize).ToArray(), normalize: false);
    }

    private static TrackedLayer FinalLinear(nn.Module<Tensor, Tensor> model, string? name)
    {
        var linears = TrackedLayer.Find(model, name).Where(l => l.Type is LinearLayerType).ToList();
        if (name is not null && linears.FirstOrDefault(l => l.Name == name) is { } exact) return exact;
        return linears.Count > 0 ? linears[^1] : throw new InfluenceSharpException(name is null ? "the model has no Linear layer" : $"layer {name}: not a Linear layer");
    }

    public string Method => stacked ? "tracin-last-stacked" : "tracin-last";
    public IReadOnlyDictionary<string, string> Settings => settings;
    public IReadOnlyList<string> ModelFingerprints { get; }
    public TrackedLayer Layer { get; }
    public string LayerName => Layer.Name;
    public long ActivationDim => Layer.InNoBias + (includeBias && Layer.HasBias ? 1 : 0);
    public long Dim => Layout.Dim;
    public TracInLayout Layout { get; }
    public Device Device { get; }

    public Dictionary<string, Tensor> Compute(IDataset data, ReadOnlySpan<int> indices, bool query)
    {
        var x = data.Inputs(indices, Device);
        var y = data.Targets(indices, Device);
        var parts = new List<Tensor>();
        using var noGrad = torch.no_grad();
        for (int c = 0; c < checkpoints.Count; c++)
        {
            var model = checkpoints[c].Model;
            model.eval();
            Tensor? input = null, output = null;
            // The hook lives for this pass only. It returns an alias of the output: nn.Sequential
            // disposes intermediate outputs, and the alias keeps the captured one valid.
            var hook = finalLayers[c].Module.register_forward_hook((m, i, o) => { input = i.detach(); output = o; return o.alias(); });
            Tensor logits;
            try { logits = model.forward(x); }
            finally { hook.remove(); }
            var a = input ?? throw new InfluenceSharpException($"layer '{Layer.Name}' was not called in the forward pass (submodules must be invoked with .call)");
            double scale = LogitScale(output!, logits);
            a = a.reshape(a.shape[0], -1);
            if (includeBias && Layer.HasBias) a = torch.cat(new[] { a, torch.ones(a.shape[0], 1, dtype: a.dtype, device: a.device) }, 1);
            // logits = s·o: ∂L/∂o = s·∂L/∂logits (ResNet-9 ends in a 0.2 scale after its last Linear).
            var g = OutputGradient(logits, y, query && task.Query == QueryMeasurement.Margin);
            if (scale != 1) g = g * scale;
            if (stacked) parts.Add((g.unsqueeze(2) * a.unsqueeze(1)).reshape(g.shape[0], -1) * Math.Sqrt(checkpoints[c].StepSize));
            else { parts.Add(g); parts.Add(a); }
        }
        return new Dictionary<string, Tensor> { ["features"] = torch.cat(parts, 1) };
    }

    /// <summary>s with logits = s·o for the final layer's output o: 1 when the output is the logits,
    /// the factor of a scale layer after it (checked on the batch); any other transform is refused.</summary>
    private double LogitScale(Tensor o, Tensor logits)
    {
        if (o.shape.SequenceEqual(logits.shape))
        {
            if (o.eq(logits).all().item<bool>()) return 1;
            using var scope = torch.NewDisposeScope();
            var o64 = o.to(ScalarType.Float64); var l64 = logits.to(ScalarType.Float64);
            double oo = o64.square().sum().item<double>();
            if (oo > 0 && double.IsFinite(oo))
            {
                double s = (o64 * l64).sum().item<double>() / oo;
                double tol = 1e-5 * Math.Max(l64.abs().max().item<double>(), 1e-30);
                if (double.IsFinite(s) && s != 0 && (l64 - s * o64).abs().max().item<double>() <= tol) return s;
            }
        }
        throw new InfluenceSharpException($"TracInCPFast (tracin-last) needs the model's logits to be the output of its last Linear layer '{Layer.Name}' " +
            $"(or a constant multiple of it), but the model transforms it; use TracInCP restricted to that layer instead (CLI: --methods tracin --layers {Layer.Name})");
    }

    /// <summary>∂/∂logits of the cross-entropy (softmax − onehot) or of −margin (softmax over the
    /// other classes − onehot), per example.</summary>
    private static Tensor OutputGradient(Tensor logits, Tensor y, bool margin)
    {
        var onehot = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype);
        var z = margin ? logits.masked_fill(onehot.to(ScalarType.Bool), double.NegativeInfinity) : logits;
        return nn.functional.softmax(z, 1) - onehot;
    }

    public void Dispose() { }
}
