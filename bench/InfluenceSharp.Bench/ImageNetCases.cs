using InfluenceSharp.Gradients;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>ImageNet-scale costs for docs/scaling.md: ResNet-18/50 (torchvision, 1000 classes) at
/// 224×224, a small batch. Forward + backward time, FLOPs counted from the layer shapes seen in the
/// forward pass, achieved GFLOP/s, peak memory; the EK-FAC per-example covariance work of the tracked
/// layers (counted, and measured on the largest layer); eigendecomposition time per factor size.</summary>
public static class ImageNetCases
{
    const int Batch = 8;

    public static IEnumerable<BenchResult> ResNet(BenchContext c, string arch)
    {
        torch.manual_seed(0);
        using var model = arch == "resnet18" ? torchvision.models.resnet18(num_classes: 1000) : torchvision.models.resnet50(num_classes: 1000);
        model.eval();   // attribution runs the trained model with fixed batch-norm statistics
        var layers = TrackedLayer.Find(model);
        long nParams = model.parameters().Sum(p => p.numel());
        // Positions T (output pixels) of each tracked layer, from one forward pass.
        var positions = new long[layers.Count];
        var inShapes = new long[layers.Count][];
        var removers = new List<Action>();
        for (int i = 0; i < layers.Count; i++)
        {
            int li = i;
            var h = layers[i].Module.register_forward_hook((m, input, output) =>
            {
                positions[li] = output.dim() == 4 ? output.shape[2] * output.shape[3] : 1;
                inShapes[li] = input.shape;
                return output;
            });
            removers.Add(h.remove);
        }
        var x = torch.randn(Batch, 3, 224, 224);
        var y = torch.randint(0, 1000, Batch, dtype: ScalarType.Int64);
        using (torch.no_grad()) model.call(x).Dispose();
        foreach (var r in removers) r();

        // Per example: forward 2·MACs; backward 2× forward (input and weight gradients).
        double fwd = 0, cov = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            fwd += 2.0 * positions[i] * l.Out * l.InNoBias;
            cov += 2.0 * positions[i] * ((double)l.In * l.In + (double)l.Out * l.Out);   // A += aᵀa, S += gᵀg
        }
        double fb = 3 * fwd;

        double Step()
        {
            model.zero_grad();
            return Measure.Seconds(() =>
            {
                using var loss = nn.functional.cross_entropy(model.call(x), y);
                loss.backward();
            });
        }
        Step();   // warm-up
        var times = Enumerable.Range(0, 3).Select(_ => Step()).ToArray();
        double best = times.Min();
        var largest = layers.Select((l, i) => (l, i)).OrderByDescending(t => t.l.In).First();
        string note = $"batch {Batch}, 3x224x224, {nParams / 1e6:F1} M params, {layers.Count} tracked layers; " +
                      $"forward {fwd / 1e9:F2} GFLOP/example; fwd+bwd = 3x forward; best of 3 (runs {string.Join(", ", times.Select(t => t.ToString("F2")))} s)";
        yield return new BenchResult($"imagenet-{arch}", "forward+backward (eval-mode BN)", Batch, best, Batch * fb / 1e9, Measure.PeakRssMiB(), note);
        yield return new BenchResult($"imagenet-{arch}", "EK-FAC covariance work (counted, not run)", 0, 0, 0, Measure.PeakRssMiB(),
            $"{cov / 1e9:F2} GFLOP/example over all tracked layers (2T(in²+out²)); largest A: {largest.l.Name} in={largest.l.In} T={positions[largest.i]}; " +
            $"factor floats (A+S, all layers) {layers.Sum(l => (double)l.In * l.In + (double)l.Out * l.Out) / 1e6:F1} M");

        // The largest layer's covariance update, as the fitter does it: unfold the input to
        // [B·T, in] patches, then one aᵀa product.
        var conv = largest.l;
        var shape = inShapes[largest.i];
        if (conv.IsConv && conv.Module is TorchSharp.Modules.Conv2d cm)
        {
            long k = cm.weight!.shape[2], cin = shape[1], side = shape[2];
            long outSide = (long)Math.Round(Math.Sqrt(positions[largest.i])), stride = side / outSide;
            var inp = torch.randn(Batch, cin, side, side);
            Tensor Patches() => nn.functional.unfold(inp, k, padding: k / 2, stride: stride).transpose(1, 2).reshape(-1, conv.InNoBias);
            { using var a0 = Patches(); a0.t().mm(a0).Dispose(); }
            double t = double.MaxValue;
            for (int i = 0; i < 3; i++) t = Math.Min(t, Measure.Seconds(() => { using var a = Patches(); a.t().mm(a).Dispose(); }));
            double g = 2.0 * Batch * positions[largest.i] * conv.InNoBias * (double)conv.InNoBias / 1e9;
            yield return new BenchResult($"imagenet-{arch}", $"A covariance, {conv.Name} (unfold + aTa, {conv.InNoBias}^2)", Batch, t, g, Measure.PeakRssMiB(),
                $"input {cin}x{side}x{side}, stride {stride}, T={positions[largest.i]}");
        }
    }

    /// <summary>Symmetric eigendecomposition (linalg.eigh, fp32) time per factor size.</summary>
    public static IEnumerable<BenchResult> Eigh(BenchContext c)
    {
        foreach (int n in new[] { 1024, 2048, 4608 })
        {
            var m = torch.randn(n, n);
            var s = m.mm(m.t()).div_(n);
            double t = Measure.Seconds(() => { var (l, v) = linalg.eigh(s); l.Dispose(); v.Dispose(); });
            yield return new BenchResult("eigh", $"linalg.eigh {n}x{n} fp32", 0, t, 0, Measure.PeakRssMiB(), $"one run; t/n³ = {t / Math.Pow(n, 3) * 1e9:F2} ns");
            m.Dispose(); s.Dispose();
        }
    }
}
