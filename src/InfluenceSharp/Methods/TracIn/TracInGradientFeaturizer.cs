using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>
/// Per-checkpoint gradients of the tracked layers, from one forward pass and one autograd.grad call per
/// checkpoint and batch (no per-example backward). Exact form: each Linear layer's gradient g aᵀ is
/// kept as its factors [g | a]; each Conv2d gradient Σ_t g_t a_tᵀ either flattened (Out·In wide) or,
/// when it has few output positions T against its width (T²(Out+In) ≤ Out·In, e.g. ResNet-18's
/// layer3/layer4 on small images), as its T·(Out+In) factors, so that TracIn's inner products are
/// GEMMs ((G Gᵀ)⊙(A Aᵀ) summed over position pairs). The factored form needs T, known once an input
/// shape is seen: <see cref="Bind"/> probes it on one example. Projected form: each checkpoint's
/// gradient is projected (<see cref="GradientProjector"/>) and scaled by √η_c, and the checkpoints are
/// concatenated: one vector per example whose dot products approximate TracInCP.
/// </summary>
internal sealed class TracInGradientFeaturizer : IFeaturizer, IDisposable
{
    private readonly IReadOnlyList<TracInCheckpoint> checkpoints;
    private readonly IAttributionTask task;
    private readonly List<List<TrackedLayer>> layersPerCheckpoint = new();
    private readonly GradientProjector? projector;
    private readonly Dictionary<string, string> settings;
    private readonly TracInConvForm convForm;
    private readonly long memoryBytes;
    private TracInLayout? layout;
    /// <summary>Output positions T per tracked layer once bound (Linear: 1), and whether each conv
    /// layer is kept factored.</summary>
    private long[]? positions;
    private bool[]? factored;
    private long[]? inputShape;

    public TracInGradientFeaturizer(string method, IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask task, string? layerFilter, ProjectionOptions? projection,
        TracInConvForm convForm = TracInConvForm.Auto, long memoryBytes = LayerBatch.DefaultMemoryBytes)
    {
        TracInCheckpoint.Validate(checkpoints);
        if (memoryBytes < 1) throw new InfluenceSharpException($"memory budget {memoryBytes} bytes: must be positive");
        Method = method; this.checkpoints = checkpoints; this.task = task; this.convForm = convForm; this.memoryBytes = memoryBytes;
        Layers = TrackedLayer.Find(checkpoints[0].Model, layerFilter);
        string Shapes(IEnumerable<TrackedLayer> ls) => string.Join(";", ls.Select(l => $"{l.Name}:{l.Out}x{l.In}"));
        foreach (var c in checkpoints)
        {
            var layers = TrackedLayer.Find(c.Model, layerFilter);
            if (Shapes(layers) != Shapes(Layers))
                throw new InfluenceSharpException($"checkpoint {c.Source ?? "(in memory)"} has layers {Shapes(layers)} but the first has {Shapes(Layers)} (another architecture?)");
            layersPerCheckpoint.Add(layers);
        }
        var p0 = checkpoints[0].Model.parameters().First();
        Dtype = p0.dtype; Device = p0.device;
        ModelFingerprints = TracInCheckpoint.Fingerprints(checkpoints.Select(c => c.Model));
        settings = new Dictionary<string, string>
        {
            ["task"] = task.GetType().Name,
            ["layers"] = Shapes(Layers),
            ["step_sizes"] = string.Join(",", checkpoints.Select(c => c.StepSize.ToString("R", CultureInfo.InvariantCulture))),
            ["form"] = projection is null ? "factored" : "projected",
        };
        if (projection is not null)
        {
            projector = new GradientProjector(Layers, projection, stream: 0, unitEntries: false, Dtype, Device);
            var segments = new List<Segment>();
            long offset = 0;
            for (int c = 0; c < checkpoints.Count; c++) { segments.Add(new Segment(c, offset, projector.OutputDim, 0)); offset += projector.OutputDim; }
            layout = new TracInLayout(segments, checkpoints.Select(_ => 1.0).ToArray(), normalize: false);
            foreach (var kv in projection.Describe()) settings[kv.Key] = kv.Value;
        }
        else if (convForm == TracInConvForm.Explicit || !Layers.Any(l => l.SeveralPositions))
            MakeLayout(Layers.Select(_ => 1L).ToArray());
    }

    public string Method { get; }
    public IReadOnlyDictionary<string, string> Settings { get { RequireBound(); return settings; } }
    public IReadOnlyList<string> ModelFingerprints { get; }
    public long Dim => Layout.Dim;
    public List<TrackedLayer> Layers { get; }
    /// <summary>How rows are laid out; its weights are η_c (factored) or 1 (projected, √η_c folded in).</summary>
    public TracInLayout Layout { get { RequireBound(); return layout!; } }
    public bool IsBound => layout is not null;
    public GradientProjector? Projector => projector;
    public ScalarType Dtype { get; }
    public Device Device { get; }

    private void RequireBound()
    {
        if (layout is null) throw new InvalidOperationException("the TracIn layout of conv layers depends on the input size: Bind(data) first");
    }

    /// <summary>Fixes the layout from the input shape of <paramref name="data"/> (one example through
    /// the first checkpoint, hooks reading the output positions of each layer with several). Data of another input shape
    /// than the first bound is refused: its features would not line up.</summary>
    public void Bind(IDataset data)
    {
        if (data.Count == 0) return;
        if (layout is not null && inputShape is null) return;            // the layout does not depend on the input
        using var scope = torch.NewDisposeScope();
        var x = data.Inputs(new[] { 0 }, Device);
        var shape = x.shape.Skip(1).ToArray();
        if (inputShape is not null)
        {
            if (!shape.SequenceEqual(inputShape))
                throw new InfluenceSharpException($"TracIn: inputs of shape [{string.Join(", ", shape)}] but the features were laid out for [{string.Join(", ", inputShape)}] (all examples must have one size)");
            return;
        }
        var model = checkpoints[0].Model;
        var t = new long[Layers.Count];
        var hooks = new List<Action>();
        for (int i = 0; i < Layers.Count; i++)
        {
            int li = i;
            t[i] = 1;
            if (!Layers[i].SeveralPositions) continue;
            // Positions as the layer type unfolds its output: a conv layer's pixels, a sequence model's tokens.
            var layer = layersPerCheckpoint[0][i];
            var h = layer.Module.register_forward_hook((m, input, output) => { t[li] = layer.OutputGradients(output).shape[1]; return output.alias(); });
            hooks.Add(h.remove);
        }
        model.eval();
        try { using var noGrad = torch.no_grad(); model.forward(x); }
        finally { foreach (var remove in hooks) remove(); }
        inputShape = shape;
        MakeLayout(t);
    }

    private void MakeLayout(long[] t)
    {
        positions = t;
        factored = Layers.Select((l, i) => l.SeveralPositions && convForm switch
        {
            TracInConvForm.Explicit => false,
            TracInConvForm.Factored => true,
            // One-hot inputs are stored as one index per position.
            _ => (double)t[i] * t[i] * (l.Out + (l.OneHotInputs ? 1 : l.In)) <= (double)l.Out * l.In,
        }).ToArray();
        var segments = new List<Segment>();
        long offset = 0;
        for (int c = 0; c < checkpoints.Count; c++)
            for (int i = 0; i < Layers.Count; i++)
            {
                var l = Layers[i];
                var s = !l.SeveralPositions ? new Segment(c, offset, l.Out, l.In)
                    : factored[i] ? new Segment(c, offset, l.Out, l.In, t[i], l.OneHotInputs) : new Segment(c, offset, l.NumParams, 0);
                segments.Add(s); offset += s.Width;
            }
        layout = new TracInLayout(segments, checkpoints.Select(c => c.StepSize).ToArray(), normalize: false) { MemoryBytes = memoryBytes };
        // Only a factored conv layer changes the row layout, so stores of the explicit form stay valid.
        if (factored.Any(f => f))
            settings["conv_positions"] = string.Join(";", Layers.Select((l, i) => factored[i] ? $"{l.Name}:{t[i]}{(l.OneHotInputs ? ":ids" : "")}" : null).Where(x => x is not null));
    }

    public Dictionary<string, Tensor> Compute(IDataset data, ReadOnlySpan<int> indices, bool query)
    {
        RequireBound();
        var x = data.Inputs(indices, Device);
        var y = data.Targets(indices, Device);
        var parts = new List<Tensor>();
        for (int c = 0; c < checkpoints.Count; c++)
        {
            var model = checkpoints[c].Model;
            model.eval();
            // Hooks live only for this pass: no hook stays registered on the user's model.
            using var capture = new GradientCapture(model, layersPerCheckpoint[c]);
            var (_, lbs) = capture.Run(model, x, logits => query ? task.QueryMeasure(logits, y) : task.TrainLoss(logits, y));
            if (projector is not null)
            {
                parts.Add(projector.Project(lbs) * Math.Sqrt(checkpoints[c].StepSize));
                continue;
            }
            for (int i = 0; i < lbs.Length; i++)
            {
                var lb = lbs[i];
                if (lb.Layer.SeveralPositions)
                {
                    if (!factored![i]) { parts.Add(lb.PerExample().reshape(lb.BatchSize, -1)); continue; }
                    if (lb.Positions != positions![i])
                        throw new InfluenceSharpException($"layer '{lb.Layer.Name}': {lb.Positions} output positions, but the features were laid out for {positions[i]} (inputs of another size)");
                    parts.Add(lb.G.reshape(lb.BatchSize, -1));
                    // One-hot inputs as their indices (exact in float32 below 2^24); patches copied out
                    // of the capture's buffer.
                    parts.Add(lb.Ids is { } ids ? ids.to(lb.G.dtype) : lb.A.reshape(lb.BatchSize, -1).clone());
                    continue;
                }
                RequireRankOne(lb);
                parts.Add(lb.G.squeeze(1));
                parts.Add(lb.A.squeeze(1));
            }
        }
        return new Dictionary<string, Tensor> { ["features"] = torch.cat(parts, 1) };
    }

    private static void RequireRankOne(LayerBatch lb)
    {
        if (!lb.RankOne)
            throw new InfluenceSharpException($"layer '{lb.Layer.Name}' is a Linear layer applied at {lb.Positions} positions per example; exact TracIn keeps Linear gradients as rank-one factors — use TracInCPFastRandProj");
    }

    /// <summary>Self-influence Σ_c w_c ‖∇L(θ_c, z)‖² (normalised: Σ_c w_c [∇ ≠ 0]) of a batch [B]
    /// (float64), straight from the layer batches: no feature row is formed, and each conv layer holds
    /// at most the memory budget of per-example matrices (<see cref="LayerBatch.SquaredNorms"/>).</summary>
    public Tensor SelfInfluence(IDataset data, ReadOnlySpan<int> indices, bool normalize)
    {
        if (projector is not null) throw new InvalidOperationException("projected TracIn scores self-influence from its features");
        var x = data.Inputs(indices, Device);
        var y = data.Targets(indices, Device);
        var total = torch.zeros(indices.Length, dtype: ScalarType.Float64, device: Device);
        bool? gram = convForm switch { TracInConvForm.Explicit => false, TracInConvForm.Factored => true, _ => null };
        for (int c = 0; c < checkpoints.Count; c++)
        {
            var model = checkpoints[c].Model;
            model.eval();
            using var capture = new GradientCapture(model, layersPerCheckpoint[c]);
            var (_, lbs) = capture.Run(model, x, logits => task.TrainLoss(logits, y));
            Tensor? sq = null;
            foreach (var lb in lbs)
            {
                if (!lb.Layer.SeveralPositions) RequireRankOne(lb);
                var s = lb.SquaredNorms(memoryBytes, gram).to(ScalarType.Float64);
                sq = sq is null ? s : sq.add_(s);
            }
            if (sq is null) continue;
            using var eta = checkpoints[c].StepSize.ToScalar();
            total.add_(normalize ? sq.gt(0).to(ScalarType.Float64) : sq, eta);
        }
        return total;
    }

    public void Dispose() => projector?.Dispose();
}

/// <summary>How exact TracIn keeps a Conv2d layer's per-example gradient Σ_t g_t a_tᵀ.</summary>
public enum TracInConvForm
{
    /// <summary>Per layer, the cheaper form: factored when T²(Out+In) ≤ Out·In.</summary>
    Auto,
    /// <summary>The Out·In matrix, flattened.</summary>
    Explicit,
    /// <summary>The factors g_t, a_t of every position (T·(Out+In) numbers).</summary>
    Factored,
}
