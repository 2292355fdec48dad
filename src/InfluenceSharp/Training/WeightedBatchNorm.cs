using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>
/// Per-example weights in the batch statistics of a model's BatchNorm layers in training mode: while
/// <see cref="Weights"/> is set, each such layer normalises with the w-weighted batch mean and
/// variance (so w_i = 0 removes example i from them exactly) and updates its running statistics with
/// them. Works through forward hooks, so any module tree with TorchSharp BatchNorm layers takes it.
/// With <see cref="UpdateRunningStatistics"/> off, the layers leave their running statistics as they
/// were and <see cref="Recorded"/> collects each layer's batch statistics as differentiable tensors
/// (what the running-statistics update adds, for reverse-mode differentiation through it).
/// </summary>
internal sealed class WeightedBatchNorm : IDisposable
{
    private readonly List<Action> removers = new();
    private readonly Dictionary<BatchNorm, (Tensor Mean, Tensor Var, Tensor? Count)> saved = new();

    private WeightedBatchNorm(IReadOnlyList<BatchNorm> layers)
    {
        Layers = layers;
        foreach (var bn in layers)
        {
            var pre = bn.register_forward_pre_hook((m, x) => { Before((BatchNorm)m); return x; });
            var post = bn.register_forward_hook((m, x, y) => After((BatchNorm)m, x, y) ?? y);
            removers.Add(pre.remove);
            removers.Add(post.remove);
        }
    }

    /// <summary>Hooks on every BatchNorm layer of <paramref name="model"/>; null when it has none.</summary>
    public static WeightedBatchNorm? Attach(nn.Module model)
    {
        var layers = model.modules().OfType<BatchNorm>().ToList();
        foreach (var bn in layers)
            if (bn.track_running_stats && bn.momentum is null)
                throw new InfluenceSharpException("example weights: a BatchNorm layer with momentum = null (cumulative running average) is not supported");
        return layers.Count == 0 ? null : new WeightedBatchNorm(layers);
    }

    /// <summary>Every BatchNorm layer of the model, in module order.</summary>
    public IReadOnlyList<BatchNorm> Layers { get; }

    /// <summary>The current batch's example weights [B] (in the model's dtype), or null: the layers
    /// behave as usual.</summary>
    public Tensor? Weights { get; set; }

    public bool UpdateRunningStatistics { get; set; } = true;

    /// <summary>Batch statistics (weighted mean, unbiased weighted variance) of each layer that ran in
    /// training mode with running statistics, in call order, when <see cref="UpdateRunningStatistics"/> is off.</summary>
    public List<(BatchNorm Layer, Tensor Mean, Tensor Var)> Recorded { get; } = new();

    /// <summary>When set, layers in eval mode normalise with these tensors in place of their running
    /// statistics (e.g. leaves that require gradients, which libtorch's batch norm refuses).</summary>
    public Dictionary<BatchNorm, (Tensor Mean, Tensor Var)>? EvalStatistics { get; set; }

    private bool Active(BatchNorm bn) => Weights is not null && bn.training;

    private void Before(BatchNorm bn)
    {
        if (!Active(bn) || !bn.track_running_stats || bn.running_mean is null || bn.running_var is null) return;
        using var noGrad = no_grad();
        saved[bn] = (bn.running_mean.clone().DetachFromDisposeScope(), bn.running_var.clone().DetachFromDisposeScope(),
                     bn.num_batches_tracked?.clone().DetachFromDisposeScope());
    }

    private Tensor? After(BatchNorm bn, Tensor x, Tensor y)
    {
        if (!bn.training && EvalStatistics is not null && EvalStatistics.TryGetValue(bn, out var stats))
            return Normalise(bn, x, stats.Mean, stats.Var);
        if (!Active(bn)) return null;
        var w = Weights!;
        long b = x.shape[0], c = x.shape[1];
        long perSample = x.numel() / (b * c);
        var shape = Enumerable.Repeat(1L, (int)x.dim()).ToArray();
        shape[0] = b;
        var wv = w.reshape(shape);
        var dims = Enumerable.Range(0, (int)x.dim()).Where(d => d != 1).Select(d => (long)d).ToArray();
        var cshape = Enumerable.Repeat(1L, (int)x.dim()).ToArray();
        cshape[1] = c;
        using var per = ((double)perSample).ToScalar();
        using var one = 1.0.ToScalar();
        var total = w.sum().mul(per);                                // Σw × positions per example
        var mean = x.mul(wv).sum(dims).div(total);
        var centred = x.sub(mean.reshape(cshape));
        var variance = centred.square().mul(wv).sum(dims).div(total);
        var output = Scale(bn, centred, variance, cshape);
        if (saved.Remove(bn, out var old))
        {
            var unbiased = variance.mul(total).div(total.sub(one));
            using var noGrad = no_grad();
            bn.running_mean!.copy_(old.Mean);
            bn.running_var!.copy_(old.Var);
            if (old.Count is not null) bn.num_batches_tracked!.copy_(old.Count);
            if (UpdateRunningStatistics)
            {
                using var m = bn.momentum!.Value.ToScalar();
                using var keep = (1 - bn.momentum!.Value).ToScalar();
                bn.running_mean.mul_(keep).add_(mean.detach(), m);
                bn.running_var.mul_(keep).add_(unbiased.detach(), m);
                using var count = 1L.ToScalar();
                bn.num_batches_tracked?.add_(count);
            }
            else Recorded.Add((bn, mean, unbiased));
            old.Mean.Dispose(); old.Var.Dispose(); old.Count?.Dispose();
        }
        return output;
    }

    private static Tensor Scale(BatchNorm bn, Tensor centred, Tensor variance, long[] cshape)
    {
        using var eps = bn.eps.ToScalar();
        var output = centred.mul(variance.add(eps).rsqrt().reshape(cshape));
        if (bn.weight is { } gamma) output = output.mul(gamma.reshape(cshape));
        if (bn.bias is { } beta) output = output.add(beta.reshape(cshape));
        return output;
    }

    private static Tensor Normalise(BatchNorm bn, Tensor x, Tensor mean, Tensor variance)
    {
        var cshape = Enumerable.Repeat(1L, (int)x.dim()).ToArray();
        cshape[1] = x.shape[1];
        return Scale(bn, x.sub(mean.reshape(cshape)), variance, cshape);
    }

    public void Dispose()
    {
        foreach (var remove in removers) remove();
        removers.Clear();
    }
}
