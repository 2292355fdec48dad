using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>A Linear or Conv2d layer whose parameters attribution methods look at. Its gradient is
/// laid out as a matrix [Out, In] where In counts the unfolded input features plus one column for the
/// bias when the layer has one (G = Σ_t g_t a_tᵀ with a_t ending in 1).</summary>
public sealed class TrackedLayer
{
    private TrackedLayer(string name, nn.Module<Tensor, Tensor> module, long outFeatures, long inFeatures, bool hasBias, Conv2d? conv)
    {
        Name = name; Module = module; Out = outFeatures; InNoBias = inFeatures; HasBias = hasBias; Conv = conv;
    }

    public string Name { get; }
    public nn.Module<Tensor, Tensor> Module { get; }
    public long Out { get; }
    /// <summary>Input features without the bias column (Linear: in_features; Conv2d: C_in·k_h·k_w).</summary>
    public long InNoBias { get; }
    public bool HasBias { get; }
    public long In => InNoBias + (HasBias ? 1 : 0);
    public long NumParams => Out * In;
    public bool IsConv => Conv is not null;
    internal Conv2d? Conv { get; }

    public override string ToString() => $"{Name} ({(IsConv ? "Conv2d" : "Linear")} {Out}x{In})";

    /// <summary>Finds the tracked layers of any module: every trainable Linear and Conv2d (groups = 1)
    /// whose name matches the filter (a substring, or a list separated by commas; null = all), in
    /// the order of the model's parameters. A layer whose weight does not require gradients (frozen in training) is left out.</summary>
    public static List<TrackedLayer> Find(nn.Module model, string? nameFilter = null)
    {
        var parts = nameFilter?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var result = new List<TrackedLayer>();
        bool anyFrozen = false;
        foreach (var (name, m) in model.named_modules())
        {
            if (parts is not null && !parts.Any(p => name == p || name.Contains(p, StringComparison.Ordinal))) continue;
            if (m is Linear or Conv2d && m.parameters().Any(p => !p.requires_grad)) { anyFrozen = true; continue; }
            switch (m)
            {
                case Linear lin:
                    result.Add(new TrackedLayer(name, lin, lin.weight!.shape[0], lin.weight.shape[1], lin.bias is not null, null));
                    break;
                case Conv2d conv:
                    if (conv.groups != 1) throw new InfluenceSharpException($"layer '{name}': Conv2d with groups={conv.groups} is not supported (only groups=1)");
                    if (conv.padding_type is not null || conv.padding_mode != PaddingModes.Zeros)
                        throw new InfluenceSharpException($"layer '{name}': only explicit zero padding is supported for Conv2d");
                    var w = conv.weight!;
                    result.Add(new TrackedLayer(name, conv, w.shape[0], w.shape[1] * w.shape[2] * w.shape[3], conv.bias is not null, conv));
                    break;
            }
        }
        // named_modules() lists a module's own leaf children before its containers' (fc before
        // layer1.0.conv1 in a ResNet): order by the parameters instead, which follow the module tree.
        var position = model.named_parameters().Select((p, i) => (p.name, i)).ToDictionary(t => t.name, t => t.i);
        result = result.OrderBy(l => position.TryGetValue(l.Name + ".weight", out var i) ? i : int.MaxValue).ToList();
        if (result.Count == 0)
            throw new InfluenceSharpException(nameFilter is null ? $"the model has no {(anyFrozen ? "trainable " : "")}Linear or Conv2d layer to track"
                : $"--layers {nameFilter}: no {(anyFrozen ? "trainable (not frozen) " : "")}Linear or Conv2d layer matches");
        return result;
    }

    /// <summary>Per-position input features a [B, T, In] (with a trailing 1 for the bias) from the
    /// layer's input as captured in the forward pass.</summary>
    public Tensor Activations(Tensor input) => Activations(input, null);

    internal Tensor Activations(Tensor input, Workspace? workspace)
    {
        if (Conv is { } c) return Im2Col.Supports(input)
            ? Im2Col.Patches(input, c.kernel_size, c.stride, c.padding!, c.dilation, HasBias, workspace)
            : PatchesByView(input, c);
        var a = input.reshape(input.shape[0], -1, input.shape[^1]);
        if (!HasBias) return a;
        var result = torch.empty(a.shape[0], a.shape[1], In, dtype: a.dtype, device: a.device);
        result.narrow(2, 0, InNoBias).copy_(a);
        using var one = 1.0.ToScalar();      // explicit: implicit Scalars can be finalised mid-call
        result.narrow(2, InNoBias, 1).fill_(one);
        return result;
    }

    /// <summary>im2col on any device: one copy from a strided view of the padded input straight into
    /// the [B, T, In(+1)] layout (nn.functional.unfold + transpose + cat made three passes).</summary>
    internal Tensor PatchesByView(Tensor input, Conv2d c)
    {
        var k = c.kernel_size; var d = c.dilation; var p = c.padding!; var s = c.stride;
        long b = input.shape[0], ch = input.shape[1];
        var x = p[0] == 0 && p[1] == 0 ? input : nn.functional.pad(input, new[] { p[1], p[1], p[0], p[0] });
        long spanH = d[0] * (k[0] - 1) + 1, spanW = d[1] * (k[1] - 1) + 1;
        var view = x.unfold(2, spanH, s[0]).unfold(3, spanW, s[1]);               // [B, C, H', W', spanH, spanW]
        if (d[0] > 1 || d[1] > 1)
            view = view.index(TensorIndex.Ellipsis, TensorIndex.Slice(null, null, d[0]), TensorIndex.Slice(null, null, d[1]));
        long oh = view.shape[2], ow = view.shape[3];
        var result = torch.empty(b, oh * ow, In, dtype: input.dtype, device: input.device);
        result.narrow(2, 0, InNoBias).view(b, oh, ow, ch, k[0], k[1]).copy_(view.permute(0, 2, 3, 1, 4, 5));
        if (HasBias)
        {
            using var one = 1.0.ToScalar();
            result.narrow(2, InNoBias, 1).fill_(one);
        }
        return result;
    }

    /// <summary>Per-position output gradients g [B, T, Out] from ∂loss/∂(layer output).</summary>
    public Tensor OutputGradients(Tensor gradOutput) =>
        IsConv ? gradOutput.flatten(2).transpose(1, 2) : gradOutput.reshape(gradOutput.shape[0], -1, gradOutput.shape[^1]);

    /// <summary>The layer's parameters as one [Out, In] matrix (weight, then bias as last column).</summary>
    public Tensor ParameterMatrix()
    {
        var w = Conv is { } c ? c.weight! : ((Linear)Module).weight!;
        var wm = w.detach().reshape(Out, InNoBias);
        if (!HasBias) return wm;
        var b = Conv is { } c2 ? c2.bias! : ((Linear)Module).bias!;
        return torch.cat(new[] { wm, b.detach().reshape(Out, 1) }, 1);
    }
}
