using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Methods;

/// <summary>Brute-force float64 references: per-example backward loops, explicit Hessians and inverses.</summary>
public static class Oracles
{
    /// <summary>Per-example gradients [N, Σ params] against an oracle's, layer by layer (the columns in
    /// <paramref name="layers"/>' order): each layer's relative error below <paramref name="tolerance"/>.</summary>
    public static void AssertLayersClose(Tensor expected, Tensor got, IReadOnlyList<TrackedLayer> layers, double tolerance)
    {
        Assert.Equal(expected.shape, got.shape);
        Assert.True(expected.abs().max().item<double>() > 1e-3, "the oracle's gradients are all near zero");
        long offset = 0;
        foreach (var l in layers)
        {
            var e = expected.narrow(1, offset, l.NumParams);
            var g = got.narrow(1, offset, l.NumParams);
            double rel = ((e - g).norm() / e.norm()).item<double>();
            Assert.True(rel < tolerance, $"{l.Name}: relative error {rel}");
            offset += l.NumParams;
        }
    }

    /// <summary>The tiny float64 problem the solver tests share: a 4-5-3 <see cref="TwoLayerMlp"/> with
    /// random inputs and labels drawn after seeding torch with <paramref name="seed"/>.</summary>
    public static (Module<Tensor, Tensor> Model, TensorPairDataset Train, TensorPairDataset Queries) TinyMlpProblem(int seed, int n = 12, int queries = 4)
    {
        torch.manual_seed(seed);
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(n, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));
        var query = new TensorPairDataset(torch.randn(queries, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { queries }));
        return (model, train, query);
    }

    /// <summary>Largest absolute error relative to the largest entry of <paramref name="expected"/>, in float64.</summary>
    public static double RelErr(Tensor actual, Tensor expected)
    {
        var e = expected.to(ScalarType.Float64);
        return (actual.to(ScalarType.Float64) - e).abs().max().item<double>() / e.abs().max().item<double>();
    }

    /// <summary>Five random 2×8×8 examples through a float64 ConvNet(3) (seeded): the tracked layers,
    /// their layer batches and the flat [5, P] per-example gradients. Dispose the capture.</summary>
    public static (GradientCapture Capture, List<TrackedLayer> Layers, LayerBatch[] Batches, Tensor Flat) ConvLayerBatches(int seed)
    {
        torch.manual_seed(seed);
        var model = new ConvNet(3).to(ScalarType.Float64);
        var layers = TrackedLayer.Find(model);
        var data = new TensorPairDataset(torch.randn(5, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 5 }));
        var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, 5).ToArray();
        var y = data.Targets(idx);
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => new ClassificationTask().TrainLoss(l, y));
        var flat = torch.cat(lbs.Select(lb => lb.PerExample().reshape(5, -1)).ToArray(), 1);
        return (capture, layers, lbs, flat);
    }

    /// <summary>Gives every BatchNorm2d non-trivial running statistics and affine parameters (drawn
    /// from libtorch's generator), so that a wrong eval-mode BatchNorm treatment shows.</summary>
    public static void RandomiseBatchNorm(Module model)
    {
        using var _ = no_grad();
        foreach (var (_, m) in model.named_modules())
            if (m is BatchNorm2d bn)
            {
                bn.running_mean!.copy_(torch.randn_like(bn.running_mean) * 0.1);
                bn.running_var!.copy_(torch.rand_like(bn.running_var) + 0.5);
                bn.weight!.copy_(torch.rand_like(bn.weight) + 0.5);
                bn.bias!.copy_(torch.randn_like(bn.bias) * 0.1);
            }
    }

    /// <summary>EK-FAC's refit eigenvalues must be the mean over examples of the per-example
    /// gradients rotated into the Kronecker eigenbasis, squared: Λ = E[(Q_Sᵀ G Q_A)²].</summary>
    public static void AssertEkfacLambdas(Module<Tensor, Tensor> model, IReadOnlyList<TrackedLayer> layers,
        InfluenceSharp.Methods.InfluenceFunctions.Factors factors, IDataset train, Func<Tensor, Tensor, Tensor> loss, double rtol)
    {
        var gz = PerExampleGradients(model, layers, train, loss);
        long offset = 0;
        foreach (var (layer, lf) in layers.Zip(factors.Layers))
        {
            var g = gz.narrow(1, offset, layer.NumParams).reshape(-1, layer.Out, layer.In);
            offset += layer.NumParams;
            var expected = lf.QS!.mT.matmul(g).matmul(lf.QA!).square().mean(new long[] { 0 });
            Assert.True(lf.Lambda!.allclose(expected, rtol: rtol, atol: 1e-12), layer.Name);
        }
    }

    /// <summary>Per-example gradient of `lossOf(model(x_i), y_i)` w.r.t. the tracked layers' parameters,
    /// flattened in [Out, In] layout per layer (weight then bias column), concatenated over layers.</summary>
    public static Tensor PerExampleGradients(Module<Tensor, Tensor> model, IReadOnlyList<TrackedLayer> layers, IDataset data,
        Func<Tensor, Tensor, Tensor> lossOf)
    {
        var rows = new List<Tensor>();
        for (int i = 0; i < data.Count; i++)
        {
            model.zero_grad();
            var x = data.Inputs(new[] { i });
            var y = data.Targets(new[] { i });
            lossOf(model.forward(x), y).backward();
            rows.Add(torch.cat(layers.Select(FlatGrad).ToArray()));
        }
        return torch.stack(rows);
    }

    public static Tensor FlatGrad(TrackedLayer l)
    {
        var ps = l.Module.parameters().ToList();
        var w = ps.First(p => p.dim() >= 2);
        var wg = w.grad!.reshape(l.Out, -1);
        if (!l.HasBias) return wg.flatten().clone();
        var b = ps.First(p => p.dim() == 1);
        return torch.cat(new[] { wg, b.grad!.reshape(l.Out, 1) }, 1).flatten().clone();
    }

    /// <summary>Jacobian of the logits of example i w.r.t. the tracked parameters: [K, P].</summary>
    public static Tensor LogitJacobian(Module<Tensor, Tensor> model, IReadOnlyList<TrackedLayer> layers, Tensor x)
    {
        var logits = model.forward(x.unsqueeze(0)).squeeze(0);
        var rows = new List<Tensor>();
        for (int k = 0; k < logits.shape[0]; k++)
        {
            model.zero_grad();
            logits[k].backward(retain_graph: true);
            rows.Add(torch.cat(layers.Select(FlatGrad).ToArray()));
        }
        return torch.stack(rows);
    }

    public static double Spearman(double[] a, double[] b)
    {
        double[] Rank(double[] v)
        {
            var order = Enumerable.Range(0, v.Length).OrderBy(i => v[i]).ToArray();
            var r = new double[v.Length];
            for (int i = 0; i < order.Length;)
            {
                int j = i;
                while (j + 1 < order.Length && v[order[j + 1]] == v[order[i]]) j++;
                for (int k = i; k <= j; k++) r[order[k]] = (i + j) / 2.0;
                i = j + 1;
            }
            return r;
        }
        var ra = Rank(a); var rb = Rank(b);
        double ma = ra.Average(), mb = rb.Average();
        double num = 0, da = 0, db = 0;
        for (int i = 0; i < a.Length; i++) { num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) * (ra[i] - ma); db += (rb[i] - mb) * (rb[i] - mb); }
        return num / Math.Sqrt(da * db);
    }

    public static double[] Flat(Tensor t) => t.to(ScalarType.Float64).cpu().flatten().data<double>().ToArray();
}

/// <summary>Tiny float64 models with every layer kind the gradient code handles.</summary>
public sealed class ConvNet : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1, conv2;
    private readonly Linear fc1, fc2;

    public ConvNet(int classes = 4) : base(nameof(ConvNet))
    {
        conv1 = Conv2d(2, 3, 3, stride: 2, padding: 1);                      // stride + padding, bias
        conv2 = Conv2d(3, 4, 3, padding: 2, dilation: 2, bias: false);         // dilation, no bias
        fc1 = Linear(4 * 4 * 4, 6);
        fc2 = Linear(6, classes, hasBias: false);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = functional.tanh(conv1.call(x));
        x = functional.tanh(conv2.call(x));
        return fc2.call(functional.tanh(fc1.call(x.flatten(1))));
    }
}

public sealed class TwoLayerMlp : Module<Tensor, Tensor>
{
    private readonly Linear fc1, fc2;

    public TwoLayerMlp(int inputs, int hidden, int classes) : base(nameof(TwoLayerMlp))
    {
        fc1 = Linear(inputs, hidden);
        fc2 = Linear(hidden, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc2.call(functional.tanh(fc1.call(x)));
}

/// <summary>Scalar regression with squared error. Its "sampled" Fisher loss uses Rademacher output
/// noise, so g² = 1 exactly and K-FAC's S factor is exactly the Gauss-Newton one.</summary>
public sealed class SquaredErrorTask : IAttributionTask
{
    public Tensor TrainLoss(Tensor output, Tensor targets) => (output.squeeze(1) - targets).square().sum() * 0.5;
    public Tensor QueryMeasure(Tensor output, Tensor targets) => TrainLoss(output, targets);

    public Tensor SampledLoss(Tensor output, Generator generator)
    {
        var signs = torch.randint(0, 2, new long[] { output.shape[0] }, generator: generator, device: output.device).to(output.dtype) * 2 - 1;
        return (output.squeeze(1) * signs).sum();
    }
}
