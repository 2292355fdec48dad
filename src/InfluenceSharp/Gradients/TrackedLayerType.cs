using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>
/// One kind of layer attribution methods can track (Linear, Conv2d, ...): which modules it is, the
/// shape [Out, In] its gradient is laid out as, how the captured input unfolds into per-position input
/// features a [B, T, In] and the output gradient into g [B, T, Out] (so that the per-example gradient
/// is Σ_t g_t a_tᵀ and covariances are sums over positions), and its parameters. Every method reaches
/// layers through <see cref="TrackedLayer"/>, which asks the types; a new kind of layer is one new type
/// class: <see cref="TrackedLayerTypes"/> finds the library's by reflection, another assembly's by
/// <see cref="TrackedLayerTypes.Register"/>.
/// </summary>
public abstract class TrackedLayerType
{
    /// <summary>The layer kind's name in messages (e.g. Linear).</summary>
    public abstract string Name { get; }

    /// <summary>Order in which types are asked (lower first; the library's use 10..1000).</summary>
    public virtual int Order => 10000;

    /// <summary>Whether a module is a layer of this kind.</summary>
    public abstract bool Handles(nn.Module module);

    /// <summary>The gradient's layout: Out rows, InNoBias input features (plus one bias column when
    /// HasBias). Throws <see cref="InfluenceSharpException"/> naming the layer for a configuration the
    /// type does not support.</summary>
    public abstract (long Out, long InNoBias, bool HasBias) Shape(string name, nn.Module module);

    /// <summary>Whether an example's gradient sums several positions (T &gt; 1: not rank one), as
    /// a convolution's does; false when each example has one position (a Linear layer on flat inputs).</summary>
    public abstract bool SeveralPositions { get; }

    /// <summary>Per-position input features a [B, T, In] (with a trailing 1 for the bias) from the
    /// layer's input as captured in the forward pass.</summary>
    public abstract Tensor Activations(TrackedLayer layer, Tensor input);

    /// <summary>Whether every a_t is one-hot (an embedding's token): its layer batches then keep the
    /// indices (<see cref="LayerBatch.Ids"/>) instead of the features.</summary>
    public virtual bool OneHotInputs => false;

    internal virtual Tensor Activations(TrackedLayer layer, Tensor input, Workspace? workspace) => Activations(layer, input);

    /// <summary>The layer's view of a batch from its captured input and output gradient.</summary>
    internal virtual LayerBatch Batch(TrackedLayer layer, Tensor input, Tensor gradOutput, Workspace? workspace) =>
        new(layer, Activations(layer, input, workspace), OutputGradients(layer, gradOutput));

    /// <summary>Per-position output gradients g [B, T, Out] from ∂loss/∂(layer output).</summary>
    public abstract Tensor OutputGradients(TrackedLayer layer, Tensor gradOutput);

    /// <summary>The layer's parameters: the weight (any shape with Out·InNoBias elements, row-major as
    /// [Out, InNoBias]), then the bias [Out] when it has one.</summary>
    public abstract Tensor[] Parameters(nn.Module module);

    /// <summary>Whether <see cref="Parameters"/> presents the weight as the transpose of the module's
    /// own [InNoBias, Out] tensor (an embedding's table): autograd differentiates that tensor
    /// (<see cref="LeafParameters"/>), and its gradient is transposed into the [Out, In] layout.</summary>
    public virtual bool WeightTransposed => false;

    /// <summary>The tensors the module's forward pass uses, in <see cref="Parameters"/>' order (the
    /// same tensors unless <see cref="WeightTransposed"/>).</summary>
    public virtual Tensor[] LeafParameters(nn.Module module) => Parameters(module);

    /// <summary>a [B, T, InNoBias] with a column of ones appended when the layer has a bias.</summary>
    protected static Tensor WithBiasColumn(TrackedLayer layer, Tensor a)
    {
        if (!layer.HasBias) return a;
        var result = torch.empty(a.shape[0], a.shape[1], layer.In, dtype: a.dtype, device: a.device);
        result.narrow(2, 0, layer.InNoBias).copy_(a);
        using var one = 1.0.ToScalar();      // explicit: implicit Scalars can be finalised mid-call
        result.narrow(2, layer.InNoBias, 1).fill_(one);
        return result;
    }

    public override string ToString() => Name;
}

/// <summary>The registry of <see cref="TrackedLayerType"/>s.</summary>
public static class TrackedLayerTypes
{
    static readonly object gate = new();
    static List<TrackedLayerType>? builtIn;
    static readonly List<TrackedLayerType> added = new();

    /// <summary>Every layer type, in the order they are asked.</summary>
    public static IReadOnlyList<TrackedLayerType> All
    {
        get
        {
            lock (gate)
            {
                builtIn ??= typeof(TrackedLayerType).Assembly.GetTypes()
                    .Where(t => t.IsClass && !t.IsAbstract && t.IsPublic && typeof(TrackedLayerType).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
                    .Select(t => (TrackedLayerType)Activator.CreateInstance(t)!).ToList();
                return builtIn.Concat(added).OrderBy(t => t.Order).ThenBy(t => t.Name, StringComparer.Ordinal).ToList();
            }
        }
    }

    /// <summary>The type that handles a module, or null.</summary>
    public static TrackedLayerType? Of(nn.Module module) => All.FirstOrDefault(t => t.Handles(module));

    /// <summary>"Linear or Conv2d": the kinds of layer that can be tracked, for messages.</summary>
    public static string Names => string.Join(" or ", All.Select(t => t.Name));

    /// <summary>Adds a layer type; disposing the result removes it again.</summary>
    public static IDisposable Register(TrackedLayerType type)
    {
        ArgumentNullException.ThrowIfNull(type);
        lock (gate) added.Add(type);
        return new Registration(type);
    }

    sealed class Registration(TrackedLayerType type) : IDisposable
    {
        public void Dispose() { lock (gate) added.Remove(type); }
    }
}
