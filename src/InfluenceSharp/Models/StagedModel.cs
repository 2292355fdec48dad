using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

/// <summary>One stage of a <see cref="IStagedModel"/>: its name and the name prefixes of its
/// parameters and buffers (a stage without any, such as a fixed input transform, has an empty list
/// or prefixes that name nothing).</summary>
public sealed record ModelStage(string Name, string[] Prefixes)
{
    /// <summary>True when <paramref name="name"/> (a parameter or buffer name) belongs to this stage.</summary>
    public bool Covers(string name) => Prefixes.Any(p => name == p || name.StartsWith(p + ".", StringComparison.Ordinal));
}

/// <summary>A model whose forward pass is a chain of stages, x ↦ s_{n−1}(… s_1(s_0(x))), so that a
/// leading part can run apart from the rest: <c>ForwardStages(ForwardStages(x, 0, k), k, n)</c> is
/// the model's forward for every k. Used to compute a frozen prefix's outputs once
/// (<c>TrainOptions.CacheFrozenPrefix</c>).</summary>
public interface IStagedModel
{
    /// <summary>The stages in forward order.</summary>
    IReadOnlyList<ModelStage> Stages { get; }

    /// <summary>What the stages compute, beyond their weights (architecture and variant): part of a
    /// cache key, so that two networks with the same parameter names but another computation
    /// (another padding) never share cached outputs.</summary>
    string StageSignature { get; }

    /// <summary>Runs stages [<paramref name="from"/>, <paramref name="to"/>) on <paramref name="x"/>.</summary>
    Tensor ForwardStages(Tensor x, int from, int to);
}

/// <summary>Stages of a model: its own (<see cref="IStagedModel"/>), or a <see cref="Sequential"/>'s
/// top-level children; null for a model that cannot be split.</summary>
public static class ModelStages
{
    public static IStagedModel? Of(nn.Module<Tensor, Tensor> model) => model switch
    {
        IStagedModel s => s,
        Sequential seq => new SequentialStages(seq),
        _ => null,
    };

    sealed class SequentialStages : IStagedModel
    {
        readonly nn.Module<Tensor, Tensor>[] children;

        public SequentialStages(Sequential seq)
        {
            var named = seq.named_children().ToList();
            children = named.Select(c => (nn.Module<Tensor, Tensor>)c.module).ToArray();
            Stages = named.Select(c => new ModelStage(c.name, new[] { c.name })).ToArray();
            StageSignature = "sequential(" + string.Join(",", named.Select(c => c.module.GetType().Name)) + ")";
        }

        public IReadOnlyList<ModelStage> Stages { get; }
        public string StageSignature { get; }

        public Tensor ForwardStages(Tensor x, int from, int to)
        {
            for (int i = from; i < to; i++) x = children[i].call(x);
            return x;
        }
    }
}
