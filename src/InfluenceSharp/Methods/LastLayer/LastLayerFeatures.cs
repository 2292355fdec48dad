using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.LastLayer;

/// <summary>The input of a model's last Linear layer (its penultimate-layer features) and the
/// model's logits, for a whole data set, float64 on the CPU. The logits must be that layer's output.</summary>
public static class LastLayerFeatures
{
    /// <summary>The model's last Linear layer (or the Linear layer named <paramref name="name"/>).</summary>
    public static TrackedLayer FinalLinear(nn.Module<Tensor, Tensor> model, string? name = null)
    {
        var linears = TrackedLayer.Find(model, name).Where(l => !l.IsConv).ToList();
        if (name is not null && linears.FirstOrDefault(l => l.Name == name) is { } exact) return exact;
        return linears.Count > 0 ? linears[^1] : throw new InfluenceSharpException(name is null ? "the model has no trainable Linear layer" : $"layer {name}: not a Linear layer");
    }

    /// <summary>(features [n, d], logits [n, K]) float64 on the CPU.</summary>
    public static (Tensor Features, Tensor Logits) Compute(nn.Module<Tensor, Tensor> model, TrackedLayer layer, IDataset data, int batchSize, string method)
    {
        var device = model.parameters().First().device;
        var fs = new List<Tensor>(); var ls = new List<Tensor>();
        bool wasTraining = model.training;
        model.eval();
        try
        {
            var all = Enumerable.Range(0, data.Count).ToArray();
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                using var noGrad = torch.no_grad();
                var span = all.AsSpan(b, Math.Min(batchSize, data.Count - b));
                Tensor? input = null, output = null;
                // The hook returns an alias: nn.Sequential disposes intermediate outputs.
                var hook = layer.Module.register_forward_hook((m, i, o) => { input = i.detach(); output = o; return o.alias(); });
                Tensor logits;
                try { logits = model.forward(data.Inputs(span, device)); }
                finally { hook.remove(); }
                if (input is null) throw new InfluenceSharpException($"{method}: layer '{layer.Name}' was not called in the forward pass");
                if (!output!.shape.SequenceEqual(logits.shape) || !output.eq(logits).all().item<bool>())
                    throw new InfluenceSharpException($"{method} needs the model's logits to be the output of its last Linear layer '{layer.Name}', but the model transforms it");
                fs.Add(input.reshape(input.shape[0], -1).to(ScalarType.Float64).cpu().MoveToOuterDisposeScope());
                ls.Add(logits.to(ScalarType.Float64).cpu().MoveToOuterDisposeScope());
            }
        }
        finally { model.train(wasTraining); }
        if (fs.Count == 0) return (torch.zeros(0, layer.InNoBias, dtype: ScalarType.Float64), torch.zeros(0, layer.Out, dtype: ScalarType.Float64));
        var f = torch.cat(fs, 0); var l = torch.cat(ls, 0);
        foreach (var t in fs.Concat(ls)) t.Dispose();
        return (f, l);
    }

    /// <summary>The labels of a data set as longs on the CPU.</summary>
    public static long[] Labels(IDataset data)
    {
        var all = Enumerable.Range(0, data.Count).ToArray();
        using var t = data.Targets(all).to(ScalarType.Int64).cpu();
        return t.data<long>().ToArray();
    }
}
