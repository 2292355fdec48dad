using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.Unrolled;

/// <summary>unrolled: exact derivatives of the query measurement with respect to every training
/// example's weight, by reverse-mode differentiation through the run's recorded SGD steps.</summary>
public sealed class UnrolledMethod : MethodDescriptor
{
    public override string Name => "unrolled";
    public override int Order => 160;
    public override MethodOption Uses => MethodOption.Measure;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context) =>
        UnrolledAttribution.FromRun(run.Dir, run.Data.Train, RunTask.Classification(run, s, Name), new UnrolledOptions
        {
            // RUN_DIR/store/unrolled-margin: the derivatives of each query set, reused by later evaluations.
            StoreDirectory = s.UseStore ? Path.Combine(run.Dir, "store", $"unrolled-{s.Measure.ToString().ToLowerInvariant()}") : null,
        }, context.Progress);
}
