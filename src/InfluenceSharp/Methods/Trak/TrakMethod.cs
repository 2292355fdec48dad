using InfluenceSharp.Features;
using InfluenceSharp.Runs;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Trak;

/// <summary>TRAK over an ensemble of models: the run's (plus N−1 retrained with other seeds), or
/// checkpoints of runs the user trained.</summary>
public sealed class TrakMethod : MethodDescriptor
{
    public override string Name => "trak";
    public override int Order => 150;
    public override MethodOption Uses =>
        MethodOption.Damping | MethodOption.Layers | MethodOption.TrainBatchSize | MethodOption.Seed | MethodOption.Ensemble
        | MethodOption.Members | MethodOption.MemberEpochs | MethodOption.ProjectionDim | MethodOption.ProjectionLayout;
    public override bool IsFeatureMethod => true;
    public override bool IsIndexable => true;
    public override MethodRole DefaultFor => MethodRole.Demo | MethodRole.GroupCuration;
    public override string? DampingHeuristic => "lambda in (Phi^T Phi + lambda I)^-1 = 0 (TRAK's reference)";

    public override string? IndexNote => "note: an IVF index recalls TRAK's top-10 poorly (0.83 with 9% of the rows scored on Fashion-MNIST; " +
        "bench/README.md, \"Why the index falls short on TRAK features\"): for TRAK the exact scan (explain without --index) is recommended";

    public override string Label(MethodSettings s) => Name + LayoutSuffix(s);

    public override string ResultLabel(MethodSettings s, IAttributionMethod built) =>
        (built is Trak tk && Ensemble.FromRuns(s) ? $"trak-members-{tk.ModelCount}" : $"trak-{s.Ensemble}") + LayoutSuffix(s);

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context)
    {
        List<nn.Module<Tensor, Tensor>> models;
        string storeName;
        if (Ensemble.FromRuns(s))
        {
            var members = Ensemble.MemberCheckpoints(run, s);
            context.Log?.Invoke($"trak: {members.Count} ensemble member(s): {string.Join(", ", members.Select(c => c.WeightsPath))}");
            models = members.Select(c => c.LoadModel()).ToList();
            storeName = $"trak-members-{Ensemble.Key(members)}";
        }
        else { models = Ensemble.Models(run, s.Ensemble, context.Log); storeName = $"trak{s.Ensemble}"; }
        return new Trak(models, new TrakOptions
        {
            Layers = s.Layers, TrainBatchSize = s.TrainBatchSize, StoreDirectory = StoreDirectory(run, storeName, s), Progress = context.Progress,
            // The store holds Φ and ΦᵀΦ only, so it does not depend on λ.
            Damping = DampingDefaults.Trak(s.Damping),
            Projection = new ProjectionOptions { Layout = s.Layout, Dim = s.ProjectionDim, Seed = s.Seed },
        }, RunTask.For(run, s), context.Profiler);
    }
}
