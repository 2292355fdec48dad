using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.DataInf;

/// <summary>datainf: influence functions with DataInf's closed-form per-layer inverse.</summary>
public sealed class DataInfMethod : MethodDescriptor
{
    public override string Name => "datainf";
    public override int Order => 97;
    public override MethodOption Uses => MethodOption.Measure | MethodOption.Damping | MethodOption.Layers | MethodOption.TrainBatchSize;
    public override string? DampingHeuristic => "0.1 x the layer's mean squared gradient entry, per layer";

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        new DataInf(run.Last.LoadModel(), RunTask.For(run, s),
            new DataInfOptions { Damping = s.Damping, Layers = s.Layers, TrainBatchSize = s.TrainBatchSize, Progress = context.Progress });
}
