using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.RelatIF;

/// <summary>relatif: EK-FAC influence divided by the square root of the training example's self-influence.</summary>
public sealed class RelatIFMethod : MethodDescriptor
{
    public override string Name => "relatif";
    public override int Order => 96;
    public override MethodOption Uses =>
        MethodOption.Measure | MethodOption.Damping | MethodOption.Layers | MethodOption.TrainBatchSize | MethodOption.Seed | MethodOption.Fisher;
    public override string? DampingHeuristic => DampingDefaults.FactoredHeuristic;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context)
    {
        var task = RunTask.For(run, s);
        var model = run.Last.LoadModel();
        var fo = new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = s.Fisher, Layers = s.Layers, TrainBatchSize = s.TrainBatchSize, Seed = s.Seed, Progress = context.Progress };
        var factors = new FactorFitter(model, task, fo, context.Profiler).Fit(run.Data.Train)!;
        var so = new ScoreOptions { Damping = DampingDefaults.Factored(s.Damping, run.Last), TrainBatchSize = s.TrainBatchSize, Progress = context.Progress };
        return new RelatIF(new InfluenceFunction(model, task, factors, so, context.Profiler));
    }
}
