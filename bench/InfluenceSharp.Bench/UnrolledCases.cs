using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>Cost of unrolled attribution against one training run: the Mlp (784-128-10) on 5,000
/// Fashion-MNIST images with the LDS protocol's recipe (SGD, batch 128, lr 0.05,
/// momentum 0.9, weight decay 5e-4) for 2 epochs, one reverse pass with Q queries (each case its own
/// process, so the peak RSS is the pass's).</summary>
public static class UnrolledCases
{
    public static void Register(Dictionary<string, Func<BenchContext, IEnumerable<BenchResult>>> all, HashSet<string> notInAll)
    {
        foreach (int q in new[] { 1, 10, 100 })
        {
            all[$"unrolled-q{q}"] = c => Cost(c, q);
            notInAll.Add($"unrolled-q{q}");
        }
    }

    public static List<string> Group() => new() { "unrolled-q1", "unrolled-q10", "unrolled-q100" };

    static IEnumerable<BenchResult> Cost(BenchContext c, int queries)
    {
        var (train, test, source) = c.Data(5000);
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10);
        // 2 epochs (80 steps): the ratio to a training run does not depend on the step count (both are linear in it).
        var o = new TrainOptions { Epochs = 2 };
        double rss0 = Measure.RssMiB();
        double trainSeconds = Measure.Seconds(() => new Trainer(o).Train(spec, train, null, null).Model.Dispose());
        var plan = ReplayPlan.For(o, train.Count);
        nn.Module<Tensor, Tensor> Initial() { torch.manual_seed(o.Seed); return spec.Create(); }
        var method = new UnrolledAttribution(Initial, train, plan, new ClassificationTask(QueryMeasurement.Margin), new UnrolledOptions { QueryBatch = queries });
        var q = test.Subset(Enumerable.Range(0, queries).ToArray());
        Tensor? d = null;
        double seconds = Measure.Seconds(() => d = method.Derivatives(q));
        d!.Dispose();
        string note = $"{source}; {plan.Steps} steps, segments of {method.SegmentSteps}; one training run {trainSeconds:F1} s; " +
                      $"per query {seconds / queries:F2} s = {seconds / queries / trainSeconds:F2}x a training run; RSS before {rss0:F0} MiB";
        yield return new BenchResult($"unrolled-q{queries}", "train (once)", 5000, trainSeconds, 0, Measure.PeakRssMiB());
        yield return new BenchResult($"unrolled-q{queries}", $"reverse pass, {queries} queries", queries, seconds, 0, Measure.PeakRssMiB(), note);
    }
}
