using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.Representer;

/// <summary>rps: representer points of the last layer refit with its L2 term.</summary>
public sealed class RepresenterPointsMethod : MethodDescriptor
{
    public override string Name => "rps";
    public override int Order => 98;
    public override MethodOption Uses => MethodOption.TrainBatchSize;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        new RepresenterPoints(run.Last.LoadModel(), new RepresenterOptions { TrainBatchSize = s.TrainBatchSize, Progress = context.Progress });
}
