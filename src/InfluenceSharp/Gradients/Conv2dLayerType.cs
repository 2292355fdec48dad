using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>nn.Conv2d (groups = 1, explicit zero padding): gradient [C_out, C_in·k_h·k_w (+1)]; each
/// output pixel is a position, its input features the unfolded patch (im2col).</summary>
public sealed class Conv2dLayerType : TrackedLayerType
{
    public override string Name => "Conv2d";
    public override int Order => 20;
    public override bool SeveralPositions => true;
    public override bool Handles(nn.Module module) => module is Conv2d;

    public override (long Out, long InNoBias, bool HasBias) Shape(string name, nn.Module module)
    {
        var conv = (Conv2d)module;
        if (conv.groups != 1) throw new InfluenceSharpException($"layer '{name}': Conv2d with groups={conv.groups} is not supported (only groups=1)");
        if (conv.padding_type is not null || conv.padding_mode != PaddingModes.Zeros)
            throw new InfluenceSharpException($"layer '{name}': only explicit zero padding is supported for Conv2d");
        var w = conv.weight!;
        return (w.shape[0], w.shape[1] * w.shape[2] * w.shape[3], conv.bias is not null);
    }

    public override Tensor Activations(TrackedLayer layer, Tensor input) => Activations(layer, input, null);

    internal override Tensor Activations(TrackedLayer layer, Tensor input, Workspace? workspace)
    {
        var c = (Conv2d)layer.Module;
        return Im2Col.Supports(input)
            ? Im2Col.Patches(input, c.kernel_size, c.stride, c.padding!, c.dilation, layer.HasBias, workspace)
            : PatchesByView(layer, input, c);
    }

    /// <summary>im2col on any device: one copy from a strided view of the padded input straight into
    /// the [B, T, In(+1)] layout (nn.functional.unfold + transpose + cat made three passes).</summary>
    internal static Tensor PatchesByView(TrackedLayer layer, Tensor input, Conv2d c)
    {
        var k = c.kernel_size; var d = c.dilation; var p = c.padding!; var s = c.stride;
        long b = input.shape[0], ch = input.shape[1];
        var x = p[0] == 0 && p[1] == 0 ? input : nn.functional.pad(input, new[] { p[1], p[1], p[0], p[0] });
        long spanH = d[0] * (k[0] - 1) + 1, spanW = d[1] * (k[1] - 1) + 1;
        var view = x.unfold(2, spanH, s[0]).unfold(3, spanW, s[1]);               // [B, C, H', W', spanH, spanW]
        if (d[0] > 1 || d[1] > 1)
            view = view.index(TensorIndex.Ellipsis, TensorIndex.Slice(null, null, d[0]), TensorIndex.Slice(null, null, d[1]));
        long oh = view.shape[2], ow = view.shape[3];
        var result = torch.empty(b, oh * ow, layer.In, dtype: input.dtype, device: input.device);
        result.narrow(2, 0, layer.InNoBias).view(b, oh, ow, ch, k[0], k[1]).copy_(view.permute(0, 2, 3, 1, 4, 5));
        if (layer.HasBias)
        {
            using var one = 1.0.ToScalar();
            result.narrow(2, layer.InNoBias, 1).fill_(one);
        }
        return result;
    }

    public override Tensor OutputGradients(TrackedLayer layer, Tensor gradOutput) => gradOutput.flatten(2).transpose(1, 2);

    public override Tensor[] Parameters(nn.Module module)
    {
        var c = (Conv2d)module;
        return c.bias is null ? new[] { (Tensor)c.weight! } : new Tensor[] { c.weight!, c.bias };
    }
}
