using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.KnnShapley;

/// <summary>knn-shapley: exact KNN-Shapley values on the input features of the model's last Linear layer.</summary>
public sealed class KnnShapleyMethod : MethodDescriptor
{
    public override string Name => "knn-shapley";
    public override string? GroupObjectiveWarning => GroupObjectiveWarnings.KnnShapley;
    public override int Order => 99;
    public override MethodOption Uses => MethodOption.TrainBatchSize;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        new KnnShapley(run.Last.LoadModel(), new KnnShapleyOptions { TrainBatchSize = s.TrainBatchSize, Progress = context.Progress });
}
