using InfluenceSharp.Features;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.TracIn;

/// <summary>TracIn and its relatives: gradient dot products kept as training-set features in RUN_DIR/store.</summary>
public abstract class TracInFamilyDescriptor : MethodDescriptor
{
    public override MethodOption Uses => MethodOption.Measure | MethodOption.Layers | MethodOption.TrainBatchSize | MethodOption.Seed;
    public override bool IsFeatureMethod => true;
    public override bool IsIndexable => true;

    protected TracInOptions Options(Run run, MethodSettings s, MethodContext context) =>
        new() { Layers = s.Layers, TrainBatchSize = s.TrainBatchSize, StoreDirectory = StoreDirectory(run, Name, s), Progress = context.Progress };
}

/// <summary>TracInCP: gradient dot products summed over the run's checkpoints, weighted by step size.</summary>
public sealed class TracInMethod : TracInFamilyDescriptor
{
    public override string Name => "tracin";
    public override int Order => 100;
    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        new TracInCP(TracInCheckpoint.From(run.Checkpoints), RunTask.For(run, s), Options(run, s, context), context.Profiler);
}

/// <summary>TracInCP on the last Linear layer only, in factored form (fast).</summary>
public sealed class TracInLastMethod : TracInFamilyDescriptor
{
    public override string Name => "tracin-last";
    public override int Order => 110;
    public override MethodOption Uses => base.Uses & ~MethodOption.Layers;
    public override MethodRole DefaultFor => MethodRole.Demo | MethodRole.Explorer;

    public override string? Refuses(MethodOption option) => option == MethodOption.Layers
        ? "tracin-last always uses the model's last Linear layer; to choose layers use --methods tracin (or tracin-proj)" : null;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context)
    {
        var checkpoints = TracInCheckpoint.From(run.Checkpoints);
        if (!RunTask.IsText(run))
            return new TracInCPFast(checkpoints, RunTask.Classification(run, s, Name),
                new TracInFastOptions { TrainBatchSize = s.TrainBatchSize, StoreDirectory = StoreDirectory(run, Name, s), Progress = context.Progress }, context.Profiler);
        // A language model's last layer runs at every token, so its gradient is Σ_t g_t a_tᵀ, not the
        // closed-form rank-one factors: exact TracIn restricted to that layer (autograd reaches only
        // the logits, so the cost stays that of a forward pass).
        return TracInCP.LastLayer(checkpoints, RunTask.For(run, s), Options(run, s, context), context.Profiler);
    }
}

/// <summary>TracInCP on randomly projected gradients.</summary>
public sealed class TracInProjMethod : TracInFamilyDescriptor
{
    public override string Name => "tracin-proj";
    public override int Order => 120;
    public override MethodOption Uses => base.Uses | MethodOption.ProjectionDim | MethodOption.ProjectionLayout;
    public override string Label(MethodSettings s) => Name + LayoutSuffix(s);

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        new TracInCPFastRandProj(TracInCheckpoint.From(run.Checkpoints), RunTask.For(run, s), new TracInRandProjOptions
        {
            Layers = s.Layers, TrainBatchSize = s.TrainBatchSize, StoreDirectory = StoreDirectory(run, Name, s), Progress = context.Progress,
            Projection = new ProjectionOptions { Layout = s.Layout, Dim = s.ProjectionDim, Seed = s.Seed },
        }, context.Profiler);
}

/// <summary>GradDot: the gradient dot product at the run's final model.</summary>
public sealed class GradDotMethod : TracInFamilyDescriptor
{
    public override string Name => "graddot";
    public override int Order => 130;
    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        GradDot.Create(run.Last.LoadModel(), RunTask.For(run, s), Options(run, s, context), context.Profiler);
}

/// <summary>GradCos: the cosine of the two gradients at the run's final model.</summary>
public sealed class GradCosMethod : TracInFamilyDescriptor
{
    public override string Name => "gradcos";
    public override int Order => 140;
    public override bool IsIndexable => false;
    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        GradCos.Create(run.Last.LoadModel(), RunTask.For(run, s), Options(run, s, context), context.Profiler);
}
