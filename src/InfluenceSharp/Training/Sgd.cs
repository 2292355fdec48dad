using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>
/// SGD with momentum and weight decay, with PyTorch's update rule (d = g + wd·p; buf = m·buf + d;
/// p -= lr·buf). Written here rather than using TorchSharp's optimizer because that one converts its
/// hyper-parameters to Scalars implicitly on every step, and the garbage collector may finalise such
/// a Scalar while libtorch still reads it (seen here as "Unknown scalar type" / toFloat failures after
/// thousands of steps, e.g. in LDS retraining). Every Scalar here is held until the step ends.
/// </summary>
internal sealed class Sgd : IDisposable
{
    private readonly List<TorchSharp.Modules.Parameter> parameters;
    private readonly Tensor?[] buffers;
    private readonly double momentum, weightDecay;

    public Sgd(IEnumerable<TorchSharp.Modules.Parameter> parameters, double momentum, double weightDecay)
    {
        this.parameters = parameters.ToList();
        buffers = new Tensor?[this.parameters.Count];
        this.momentum = momentum; this.weightDecay = weightDecay;
    }

    public void ZeroGrad()
    {
        foreach (var p in parameters) p.grad?.zero_();
    }

    public void Step(double learningRate)
    {
        using var noGrad = no_grad();
        using var negLr = (-learningRate).ToScalar();
        using var wd = weightDecay.ToScalar();
        using var mom = momentum.ToScalar();
        using var one = 1.0.ToScalar();
        for (int i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            if (p.grad is not { } g) continue;
            using var scope = NewDisposeScope();
            var d = weightDecay != 0 ? g.add(p, wd) : g;
            if (momentum != 0)
            {
                if (buffers[i] is { } buf) buf.mul_(mom).add_(d, one);
                else buffers[i] = d.detach().clone().DetachFromDisposeScope();
                d = buffers[i]!;
            }
            p.add_(d, negLr);
        }
    }

    /// <summary>The momentum buffers (null where a parameter has had no step yet), in parameter
    /// order: saved with each checkpoint so that a resumed run continues bit-identically.</summary>
    public Tensor?[] Buffers => buffers;

    /// <summary>Replaces buffer <paramref name="i"/> with a copy of <paramref name="value"/>.</summary>
    public void SetBuffer(int i, Tensor value)
    {
        if (!value.shape.SequenceEqual(parameters[i].shape))
            throw new InfluenceSharpException($"optimizer state: momentum buffer {i} is [{string.Join(", ", value.shape)}], the parameter is [{string.Join(", ", parameters[i].shape)}]");
        buffers[i]?.Dispose();
        buffers[i] = value.detach().to_type(parameters[i].dtype).to(parameters[i].device).clone().DetachFromDisposeScope();
    }

    /// <summary>Forgets buffer <paramref name="i"/> (as before the parameter's first step).</summary>
    public void ClearBuffer(int i)
    {
        buffers[i]?.Dispose();
        buffers[i] = null;
    }

    public void Dispose()
    {
        foreach (var b in buffers) b?.Dispose();
    }
}
