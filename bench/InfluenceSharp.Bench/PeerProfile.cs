using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>Where one batch of 500 goes in the issue-13 CNN's per-example gradient work (TracInCP,
/// EK-FAC lambda/self, TRAK): forward, autograd.grad, im2col, per-example gradients per layer, the
/// feature row; each timed with the Profiler over 10 batches (best and total reported).</summary>
public static class PeerProfile
{
    public static IEnumerable<BenchResult> Cnn(BenchContext c)
    {
        var (train, _, src) = c.Data(5000);
        torch.manual_seed(0);
        var model = new PeerCnn(10);
        model.eval();
        var layers = TrackedLayer.Find(model);
        var prof = new Diagnostics.Profiler();
        var task = new ClassificationTask();
        using var capture = new GradientCapture(model, layers);
        for (int rep = 0; rep < 11; rep++)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(rep % 10 * 500, 500).ToArray();
            var x = train.Inputs(idx, CPU); var y = train.Targets(idx, CPU);
            var p = rep == 0 ? new Diagnostics.Profiler() : prof;    // first batch is warm-up
            LayerBatch[]? lbs = null;
            using (p.Stage("capture (forward + autograd.grad + im2col)")) (_, lbs) = capture.Run(model, x, l => task.TrainLoss(l, y));
            using (p.Stage("  forward only (no grad)")) using (torch.no_grad()) model.call(x).Dispose();
            foreach (var lb in lbs!)
            {
                if (!lb.Layer.IsConv) continue;
                var input = InputOf(lb);
                using (p.Stage($"  im2col {lb.Layer.Name} [{lb.A.shape[1]}x{lb.A.shape[2]}] (fresh output buffer)")) lb.Layer.Activations(input).Dispose();
                using (p.Stage($"per-example grad {lb.Layer.Name} (bmm over T={lb.A.shape[1]})")) lb.PerExample().Dispose();
                using (p.Stage($"  G contiguous {lb.Layer.Name}")) lb.G.contiguous().Dispose();
            }
            foreach (var lb in lbs)
            {
                using (p.Stage($"A covariance {lb.Layer.Name} [{lb.A.shape[0] * lb.A.shape[1]}x{lb.A.shape[2]}]")) lb.ACovariance().to(ScalarType.Float64).Dispose();
                using (p.Stage($"S covariance {lb.Layer.Name} [{lb.G.shape[0] * lb.G.shape[1]}x{lb.G.shape[2]}]")) lb.SCovariance().to(ScalarType.Float64).Dispose();
            }
            using (p.Stage("feature row (cat of per-example grads and factors)"))
                torch.cat(lbs.Select(lb => lb.Layer.IsConv ? lb.PerExample().reshape(500, -1) : torch.cat(new[] { lb.G.squeeze(1), lb.A.squeeze(1) }, 1)).ToArray(), 1).Dispose();
        }
        foreach (var (stage, secs, calls) in prof.Stages)
            yield return new BenchResult("profile-peers-cnn", stage, 500, secs / calls, 0, Measure.PeakRssMiB(), $"mean of {calls} batches of 500; {src}");
    }

    // A stand-in input of the right shape for re-running im2col alone (values do not matter for cost).
    static Tensor InputOf(LayerBatch lb) => lb.Layer.Name == "conv1" ? torch.randn(500, 1, 28, 28) : torch.randn(500, 8, 12, 12);
}

/// <summary>Forward + backward of the issue-13 CNN alone: NCHW input, channels-last input, and the
/// parts (conv, max-pool backward) — what dominates the capture.</summary>
public static class PeerLayout
{
    public static IEnumerable<BenchResult> Cnn(BenchContext c)
    {
        var (train, _, _) = c.Data(5000);
        torch.manual_seed(0);
        var model = new PeerCnn(10);
        var idx = Enumerable.Range(0, 500).ToArray();
        var x = train.Inputs(idx, CPU); var y = train.Targets(idx, CPU);
        var xcl = x.contiguous().as_strided(x.shape, new[] { 28L * 28, 1, 28, 1 });
        var prof = new Diagnostics.Profiler();
        for (int rep = 0; rep < 6; rep++)
        {
            var p = rep == 0 ? new Diagnostics.Profiler() : prof;
            foreach (var (name, input) in new[] { ("NCHW", x), ("channels-last", xcl) })
            {
                using var scope = NewDisposeScope();
                using (p.Stage($"forward+backward {name}"))
                {
                    model.zero_grad();
                    using var l = nn.functional.cross_entropy(model.call(input), y, reduction: nn.Reduction.Sum);
                    l.backward();
                }
                var h = torch.randn(500, 8, 24, 24);
                if (name != "NCHW") h = h.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
                h.requires_grad_(true);
                using (p.Stage($"  maxpool fwd+bwd 8x24x24 {name}"))
                {
                    var o = nn.functional.max_pool2d(h, 2);
                    o.sum().backward();
                }
            }
        }
        foreach (var (stage, secs, calls) in prof.Stages)
            yield return new BenchResult("layout-peers-cnn", stage, 500, secs / calls, 0, Measure.PeakRssMiB(), $"mean of {calls}");
    }
}
