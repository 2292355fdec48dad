using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// Products of the curvature of the training loss with vectors of tracked-layer parameters:
/// H v with H = (1/n) Σ_i ∇²_θ L(z_i) + L2·I (true Hessian, by double backward) or
/// G v with G = (1/n) Σ_i J_iᵀ H_out,i J_i + L2·I (Gauss-Newton: J_i v by the double-backward
/// "R-op" trick, H_out by double backward of the loss w.r.t. the outputs, Jᵀ by one more backward).
/// θ is laid out like the per-example gradients: per tracked layer an [Out, In] matrix (weight, then
/// the bias as last column), flattened and concatenated in layer order; P = Σ Out·In.
/// Vectors come and go as float64 [m, P]; products are computed in the model's dtype and summed in
/// float64. Per training batch the first backward runs once and its graph is reused for all m vectors.
/// </summary>
public sealed class CurvatureOperator
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly IAttributionTask task;
    private readonly IDataset train;
    private readonly List<TrackedLayer> layers;
    private readonly HessianKind kind;
    private readonly double l2;
    private readonly int batchSize;

    public CurvatureOperator(nn.Module<Tensor, Tensor> model, IAttributionTask task, IReadOnlyList<TrackedLayer> layers, IDataset train,
        HessianKind kind, double l2 = 0, int batchSize = 256)
    {
        if (train.Count == 0) throw new InfluenceSharpException("the Hessian needs at least one training example");
        this.model = model; this.task = task; this.train = train; this.layers = layers.ToList();
        this.kind = kind; this.l2 = l2; this.batchSize = Math.Max(1, batchSize);
        NumParams = this.layers.Sum(l => l.NumParams);
    }

    public long NumParams { get; }
    public HessianKind Kind => kind;
    public int TrainCount => train.Count;
    /// <summary>Work done so far: Σ over <see cref="Apply"/> calls of vectors × training examples (one
    /// curvature-vector product on one example each); a machine-independent measure of a solver's cost.</summary>
    public long ExampleVectorProducts { get; private set; }

    private Device Device => model.parameters().First().device;
    private ScalarType Dtype => model.parameters().First().dtype;

    /// <summary>The tensors autograd differentiates for a tracked layer: weight, then bias when it has
    /// one (an embedding's table as stored, [V, D], not the [D, V] view of the layout).</summary>
    internal static Tensor[] ParametersOf(TrackedLayer l) => l.Type.LeafParameters(l.Module);

    /// <summary>(curvature) · V for V [m, P] (rows are vectors), averaged over the whole training set,
    /// or over <paramref name="indices"/> only (a minibatch estimate, as LiSSA uses).</summary>
    public Tensor Apply(Tensor v, int[]? indices = null)
    {
        if (v.dim() != 2 || v.shape[1] != NumParams)
            throw new ArgumentException($"vectors must be [m, {NumParams}], got [{string.Join(", ", v.shape)}]");
        var idx = indices ?? Enumerable.Range(0, train.Count).ToArray();
        long m = v.shape[0];
        ExampleVectorProducts += m * idx.Length;
        var result = torch.zeros(m, NumParams, dtype: ScalarType.Float64, device: Device);
        var ps = layers.SelectMany(ParametersOf).ToArray();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            for (int b = 0; b < idx.Length; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var span = idx.AsSpan(b, Math.Min(batchSize, idx.Length - b));
                var vs = Split(v.to(Dtype, Device));                      // per parameter [m, ...]
                using var grad = torch.enable_grad();
                var x = train.Inputs(span, Device);
                var y = train.Targets(span, Device);
                var logits = model.forward(x);
                using var invN = (1.0 / idx.Length).ToScalar();        // held: see the note on implicit Scalars in Training/Sgd.cs
                var loss = task.TrainLoss(logits, y).mul(invN);
                var rows = kind == HessianKind.True ? TrueRows(loss, ps, vs, m) : GaussNewtonRows(loss, logits, ps, vs, m);
                using var one = 1.0.ToScalar();
                result.add_(torch.stack(rows).to(ScalarType.Float64), one);
            }
        }
        finally { model.train(wasTraining); }
        if (l2 != 0)
        {
            using var l2s = l2.ToScalar();
            result.add_(v.to(ScalarType.Float64, Device), alpha: l2s);
        }
        return result;
    }

    private List<Tensor> TrueRows(Tensor loss, Tensor[] ps, Tensor[] vs, long m)
    {
        var g = torch.autograd.grad(new[] { loss }, ps, retain_graph: true, create_graph: true);
        var rows = new List<Tensor>((int)m);
        for (long k = 0; k < m; k++)
        {
            // Summed by stack().sum(): `a + b` would pass an implicit Scalar alpha that the GC may
            // finalise while libtorch reads it (seen here: "toFloat" failures in long loops).
            var dot = torch.stack(Enumerable.Range(0, ps.Length).Select(j => (g[j] * vs[j][k]).sum()).ToArray()).sum();
            // A parameter autograd finds unreached (seen with embedding tables) has a zero product.
            var hv = torch.autograd.grad(new[] { dot }, ps, retain_graph: true, allow_unused: true);
            rows.Add(Flatten(hv.Select((t, j) => t is null || t.IsInvalid ? torch.zeros_like(ps[j]) : t).ToList()));
        }
        return rows;
    }

    private List<Tensor> GaussNewtonRows(Tensor loss, Tensor logits, Tensor[] ps, Tensor[] vs, long m)
    {
        // Jᵀu as a function of a dummy u (linear in u): d(Jᵀu · v)/du = J v.
        var u = torch.zeros_like(logits).requires_grad_(true);
        var jtu = torch.autograd.grad(new[] { logits }, ps, new[] { u }, retain_graph: true, create_graph: true);
        var dz = torch.autograd.grad(new[] { loss }, new[] { logits }, retain_graph: true, create_graph: true)[0];
        var rows = new List<Tensor>((int)m);
        for (long k = 0; k < m; k++)
        {
            var dot = torch.stack(Enumerable.Range(0, ps.Length).Select(j => (jtu[j] * vs[j][k]).sum()).ToArray()).sum();
            var jv = torch.autograd.grad(new[] { dot }, new[] { u }, retain_graph: true)[0].detach();
            var hjv = torch.autograd.grad(new[] { (dz * jv).sum() }, new[] { logits }, retain_graph: true)[0].detach();
            rows.Add(Flatten(torch.autograd.grad(new[] { logits }, ps, new[] { hjv }, retain_graph: true)));
        }
        return rows;
    }

    /// <summary>[m, P] → per parameter [m, ...parameter shape].</summary>
    private Tensor[] Split(Tensor v)
    {
        var result = new List<Tensor>();
        long off = 0;
        long m = v.shape[0];
        foreach (var l in layers)
        {
            var block = v.narrow(1, off, l.NumParams).reshape(m, l.Out, l.In);
            var ps = ParametersOf(l);
            var wShape = new[] { m }.Concat(ps[0].shape).ToArray();
            var w = block.narrow(2, 0, l.InNoBias);
            result.Add((l.Type.WeightTransposed ? w.transpose(1, 2) : w).reshape(wShape));
            if (l.HasBias) result.Add(block.narrow(2, l.InNoBias, 1).reshape(m, l.Out));
            off += l.NumParams;
        }
        return result.ToArray();
    }

    /// <summary>Per-parameter tensors (weight, bias per layer) → one flat [P] vector in the [Out, In] layout.</summary>
    private Tensor Flatten(IList<Tensor> perParam)
    {
        var parts = new List<Tensor>();
        int j = 0;
        foreach (var l in layers)
        {
            var w = l.Type.WeightTransposed ? perParam[j++].reshape(l.InNoBias, l.Out).t() : perParam[j++].reshape(l.Out, l.InNoBias);
            parts.Add(l.HasBias ? torch.cat(new[] { w, perParam[j++].reshape(l.Out, 1) }, 1).flatten() : w.flatten());
        }
        return torch.cat(parts);
    }
}
