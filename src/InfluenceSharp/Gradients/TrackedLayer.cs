using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>A layer whose parameters attribution methods look at (a Linear, a Conv2d, or any other
/// registered <see cref="TrackedLayerType"/>). Its gradient is laid out as a matrix [Out, In] where In
/// counts the unfolded input features plus one column for the bias when the layer has one
/// (G = Σ_t g_t a_tᵀ with a_t ending in 1).</summary>
public sealed class TrackedLayer
{
    private TrackedLayer(string name, nn.Module<Tensor, Tensor> module, TrackedLayerType type, long outFeatures, long inFeatures, bool hasBias, bool inSequenceModel = false)
    {
        Name = name; Module = module; Type = type; Out = outFeatures; InNoBias = inFeatures; HasBias = hasBias; InSequenceModel = inSequenceModel;
    }

    public string Name { get; }
    public nn.Module<Tensor, Tensor> Module { get; }
    /// <summary>What kind of layer it is: how its input and output gradient unfold.</summary>
    public TrackedLayerType Type { get; }
    public long Out { get; }
    /// <summary>Input features without the bias column (Linear: in_features; Conv2d: C_in·k_h·k_w).</summary>
    public long InNoBias { get; }
    public bool HasBias { get; }
    public long In => InNoBias + (HasBias ? 1 : 0);
    public long NumParams => Out * In;
    /// <summary>An example's gradient sums several positions (a convolution's output pixels), so it is
    /// not rank one (see <see cref="TrackedLayerType.SeveralPositions"/>).</summary>
    public bool SeveralPositions => Type.SeveralPositions || InSequenceModel;
    /// <summary>The layer belongs to a <see cref="Models.ISequenceModel"/> (applied at every token).</summary>
    public bool InSequenceModel { get; }
    /// <summary>Its inputs are one-hot (an embedding): batches keep the indices.</summary>
    public bool OneHotInputs => Type.OneHotInputs;
    /// <summary>A Conv2d layer.</summary>
    public bool IsConv => Type is Conv2dLayerType;

    public override string ToString() => $"{Name} ({Type.Name} {Out}x{In})";

    /// <summary>Finds the tracked layers of any module: every trainable layer of a registered type
    /// (Linear, Conv2d with groups = 1, ...) whose name matches the filter (a substring, or a list
    /// separated by commas; null = all), in the order of the model's parameters. A layer whose weight
    /// does not require gradients (frozen in training) is left out.</summary>
    public static List<TrackedLayer> Find(nn.Module model, string? nameFilter = null)
    {
        var parts = nameFilter?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var types = TrackedLayerTypes.All;
        var result = new List<TrackedLayer>();
        bool anyFrozen = false;
        foreach (var (name, m) in model.named_modules())
        {
            if (parts is not null && !parts.Any(p => name == p || name.Contains(p, StringComparison.Ordinal))) continue;
            var type = types.FirstOrDefault(t => t.Handles(m));
            if (type is null || m is not nn.Module<Tensor, Tensor> module) continue;
            if (m.parameters().Any(p => !p.requires_grad)) { anyFrozen = true; continue; }
            var (o, i, bias) = type.Shape(name, m);
            result.Add(new TrackedLayer(name, module, type, o, i, bias, model is Models.ISequenceModel));
        }
        // named_modules() lists a module's own leaf children before its containers' (fc before
        // layer1.0.conv1 in a ResNet): order by the parameters instead, which follow the module tree.
        var position = model.named_parameters().Select((p, i) => (p.name, i)).ToDictionary(t => t.name, t => t.i);
        result = result.OrderBy(l => position.TryGetValue(l.Name + ".weight", out var i) ? i : int.MaxValue).ToList();
        if (result.Count == 0)
            throw new InfluenceSharpException(nameFilter is null ? $"the model has no {(anyFrozen ? "trainable " : "")}{TrackedLayerTypes.Names} layer to track"
                : $"--layers {nameFilter}: no {(anyFrozen ? "trainable (not frozen) " : "")}{TrackedLayerTypes.Names} layer matches");
        return result;
    }

    /// <summary>Per-position input features a [B, T, In] (with a trailing 1 for the bias) from the
    /// layer's input as captured in the forward pass.</summary>
    public Tensor Activations(Tensor input) => Type.Activations(this, input);

    internal Tensor Activations(Tensor input, Workspace? workspace) => Type.Activations(this, input, workspace);

    /// <summary>The layer's view of a batch (sparse for one-hot inputs).</summary>
    internal LayerBatch Batch(Tensor input, Tensor gradOutput, Workspace? workspace) => Type.Batch(this, input, gradOutput, workspace);

    /// <summary>im2col of a Conv2d layer's input by a strided view (any device).</summary>
    internal Tensor PatchesByView(Tensor input, Conv2d c) => Conv2dLayerType.PatchesByView(this, input, c);

    /// <summary>Per-position output gradients g [B, T, Out] from ∂loss/∂(layer output).</summary>
    public Tensor OutputGradients(Tensor gradOutput) => Type.OutputGradients(this, gradOutput);

    /// <summary>The layer's parameters: weight, then bias when it has one.</summary>
    public Tensor[] Parameters() => Type.Parameters(Module);
}
