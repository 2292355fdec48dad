using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>Per-example gradients of the tracked layers as float64 rows [b, P] in the [Out, In]
/// layout (per layer, weight then bias as the last column, layers concatenated): of the training loss,
/// or of the query measurement. Batch by batch, in eval mode, inside a dispose scope per batch.</summary>
public sealed class PerExampleGradients
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly IAttributionTask task;

    public PerExampleGradients(nn.Module<Tensor, Tensor> model, IAttributionTask task, IReadOnlyList<TrackedLayer> layers)
    {
        this.model = model; this.task = task; Layers = layers;
        NumParams = layers.Sum(l => l.NumParams);
    }

    public IReadOnlyList<TrackedLayer> Layers { get; }
    public long NumParams { get; }
    public Device Device => model.parameters().First().device;

    /// <summary>body(offset, gradients [b, P] float64) for consecutive batches of <paramref name="batchSize"/>.</summary>
    public void ForEachBatch(IDataset data, int batchSize, bool query, Action<int, Tensor> body)
    {
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var capture = new GradientCapture(model, Layers);
            var all = Enumerable.Range(0, data.Count).ToArray();
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(batchSize, data.Count - b));
                var y = data.Targets(span, Device);
                var (_, lbs) = capture.Run(model, data.Inputs(span, Device), logits => query ? task.QueryMeasure(logits, y) : task.TrainLoss(logits, y));
                var g = torch.cat(lbs.Select(lb => lb.PerExample().reshape(lb.BatchSize, -1)).ToArray(), 1).to(ScalarType.Float64);
                body(b, g);
            }
        }
        finally { model.train(wasTraining); }
    }

    /// <summary>All rows at once [n, P] float64 (for query sets and small problems).</summary>
    public Tensor All(IDataset data, int batchSize, bool query)
    {
        var rows = new List<Tensor>();
        ForEachBatch(data, batchSize, query, (_, g) => rows.Add(g.MoveToOuterDisposeScope()));
        var all = rows.Count == 0 ? torch.zeros(0, NumParams, dtype: ScalarType.Float64) : torch.cat(rows, 0);
        foreach (var r in rows) r.Dispose();
        return all;
    }
}
