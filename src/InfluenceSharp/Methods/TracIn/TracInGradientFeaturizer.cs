using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>
/// Per-checkpoint gradients of the tracked layers, from one forward pass and one autograd.grad call per
/// checkpoint and batch (no per-example backward). Exact form: each Linear layer's gradient g aᵀ is
/// kept as its factors [g | a] and each Conv2d gradient Σ_t g_t a_tᵀ flattened, so that TracIn's
/// inner products are GEMMs ((G Gᵀ)⊙(A Aᵀ) for Linear layers). Projected form: each checkpoint's
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

    public TracInGradientFeaturizer(string method, IReadOnlyList<TracInCheckpoint> checkpoints, IAttributionTask task, string? layerFilter, ProjectionOptions? projection)
    {
        TracInCheckpoint.Validate(checkpoints);
        Method = method; this.checkpoints = checkpoints; this.task = task;
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
        var segments = new List<Segment>();
        long offset = 0;
        if (projection is null)
        {
            for (int c = 0; c < checkpoints.Count; c++)
                foreach (var l in Layers)
                {
                    var s = l.IsConv ? new Segment(c, offset, l.NumParams, 0) : new Segment(c, offset, l.Out, l.In);
                    segments.Add(s); offset += s.Width;
                }
            Layout = new TracInLayout(segments, checkpoints.Select(c => c.StepSize).ToArray(), normalize: false);
        }
        else
        {
            projector = new GradientProjector(Layers, projection, stream: 0, unitEntries: false, Dtype, Device);
            for (int c = 0; c < checkpoints.Count; c++) { segments.Add(new Segment(c, offset, projector.OutputDim, 0)); offset += projector.OutputDim; }
            Layout = new TracInLayout(segments, checkpoints.Select(_ => 1.0).ToArray(), normalize: false);
        }
        ModelFingerprints = TracInCheckpoint.Fingerprints(checkpoints.Select(c => c.Model));
        settings = new Dictionary<string, string>
        {
            ["task"] = task.GetType().Name,
            ["layers"] = Shapes(Layers),
            ["step_sizes"] = string.Join(",", checkpoints.Select(c => c.StepSize.ToString("R", CultureInfo.InvariantCulture))),
            ["form"] = projection is null ? "factored" : "projected",
        };
        if (projection is not null) foreach (var kv in projection.Describe()) settings[kv.Key] = kv.Value;
    }

    public string Method { get; }
    public IReadOnlyDictionary<string, string> Settings => settings;
    public IReadOnlyList<string> ModelFingerprints { get; }
    public long Dim => Layout.Dim;
    public List<TrackedLayer> Layers { get; }
    /// <summary>How rows are laid out; its weights are η_c (factored) or 1 (projected, √η_c folded in).</summary>
    public TracInLayout Layout { get; }
    public GradientProjector? Projector => projector;
    public ScalarType Dtype { get; }
    public Device Device { get; }

    public Dictionary<string, Tensor> Compute(IDataset data, ReadOnlySpan<int> indices, bool query)
    {
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
            foreach (var lb in lbs)
            {
                if (lb.Layer.IsConv) { parts.Add(lb.PerExample().reshape(lb.BatchSize, -1)); continue; }
                if (!lb.RankOne)
                    throw new InfluenceSharpException($"layer '{lb.Layer.Name}' is a Linear layer applied at {lb.A.shape[1]} positions per example; exact TracIn keeps Linear gradients as rank-one factors — use TracInCPFastRandProj");
                parts.Add(lb.G.squeeze(1));
                parts.Add(lb.A.squeeze(1));
            }
        }
        return new Dictionary<string, Tensor> { ["features"] = torch.cat(parts, 1) };
    }

    public void Dispose() => projector?.Dispose();
}
