using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>
/// Captures, for every tracked layer, its input and output in a forward hook, then gets all output
/// gradients at once with autograd.grad (TorchSharp has no tensor or backward hooks). The hook returns
/// an alias of the output: nn.Sequential disposes intermediate outputs once the next layer has used
/// them, and the alias keeps the captured tensor valid and still part of the graph.
/// Dispose the capture to remove its hooks.
/// </summary>
public sealed class GradientCapture : IDisposable
{
    private readonly List<TrackedLayer> layers;
    private readonly List<Action> removers = new();
    private readonly Tensor?[] inputs, outputs;
    private readonly Workspace[] patches;

    public GradientCapture(nn.Module model, IReadOnlyList<TrackedLayer> layers)
    {
        this.layers = layers.ToList();
        inputs = new Tensor?[layers.Count];
        outputs = new Tensor?[layers.Count];
        patches = layers.Select(_ => new Workspace()).ToArray();
        for (int i = 0; i < layers.Count; i++)
        {
            int li = i;
            var remover = layers[i].Module.register_forward_hook((m, input, output) =>
            {
                inputs[li] = input.detach();
                outputs[li] = output;
                return output.alias();
            });
            removers.Add(remover.remove);
        }
    }

    public IReadOnlyList<TrackedLayer> Layers => layers;

    /// <summary>Runs the model on x, calls lossOf(logits) (a scalar: the SUM of per-example losses, so
    /// that output gradients are per-example gradients), and returns the logits (detached) and one
    /// LayerBatch per tracked layer. Call inside a dispose scope. A conv layer's inputs (patches) live in
    /// a buffer of this capture that the next Run overwrites.</summary>
    public (Tensor Logits, LayerBatch[] Layers) Run(nn.Module<Tensor, Tensor> model, Tensor x, Func<Tensor, Tensor> lossOf)
    {
        Array.Clear(inputs); Array.Clear(outputs);
        using var grad = torch.enable_grad();
        var logits = model.forward(x);
        for (int i = 0; i < layers.Count; i++)
            if (outputs[i] is null) throw new InfluenceSharpException($"tracked layer '{layers[i].Name}' was not called in the forward pass");
        var loss = lossOf(logits);
        double lv = loss.detach().to(ScalarType.Float64).item<double>();
        if (!double.IsFinite(lv))
            throw new InfluenceSharpException($"the loss of a batch is {lv}: the model produces non-finite outputs (a diverged checkpoint or corrupt inputs?)");
        var outs = outputs.Select(o => o!).ToList();
        var grads = torch.autograd.grad(new[] { loss }, outs, allow_unused: true);
        var result = new LayerBatch[layers.Count];
        for (int i = 0; i < layers.Count; i++)
        {
            var gi = grads[i] is { } gt && !gt.IsInvalid ? gt : torch.zeros_like(outs[i]);
            result[i] = layers[i].Batch(inputs[i]!, gi, patches[i]);
        }
        Array.Clear(inputs); Array.Clear(outputs);
        return (logits.detach(), result);
    }

    public void Dispose()
    {
        foreach (var remove in removers) remove();
        removers.Clear();
        foreach (var w in patches) w.Dispose();
    }
}
