using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Gradients;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>
/// Hessian-vector-product influence on a tiny float64 transformer with the language-model task,
/// embeddings included: the Hessian of the mean next-token loss is formed here by central
/// differences of the autograd-loop gradient (the parameters perturbed through their own tensors:
/// an embedding's table is the layout's transpose), and if-explicit and if-cg scores equal
/// g_qᵀ (H + λI)⁻¹ g_z with it.
/// </summary>
public class GptHvpTests
{
    const int Vocab = 7, Context = 4, N = 6;

    /// <summary>Adds s·v (the [Out, In] layout of the tracked layers) to the model's parameters.</summary>
    static void Perturb(IReadOnlyList<TrackedLayer> layers, Tensor v, double s)
    {
        using var _ = no_grad();
        long off = 0;
        foreach (var l in layers)
        {
            var block = v.narrow(0, off, l.NumParams).reshape(l.Out, l.In) * s;
            off += l.NumParams;
            if (l.Module is Embedding e) { e.weight!.add_(block.t()); continue; }
            var lin = (Linear)l.Module;
            lin.weight!.add_(block.narrow(1, 0, l.InNoBias));
            lin.bias?.add_(block.narrow(1, l.InNoBias, 1).squeeze(1));
        }
    }

    /// <summary>∇ of the mean training loss in the layout: one backward of the explicit loss over the
    /// whole set, divided by its size.</summary>
    static Tensor MeanGradient(Gpt model, IReadOnlyList<TrackedLayer> layers, TensorPairDataset data)
    {
        model.zero_grad();
        GptAttributionTests.ExplicitLoss(model.forward(data.X), data.Y).backward();
        return torch.cat(layers.Select(GptAttributionTests.Flat).ToArray()) / data.Count;
    }

    [Fact]
    public void ExplicitAndCgEqualTheFiniteDifferenceHessian()
    {
        torch.manual_seed(2731);
        var model = new Gpt(new GptOptions(Vocab, Context, Embedding: 4, Layers: 1, Heads: 2));
        model.to(ScalarType.Float64);
        using (no_grad())
            foreach (var w in model.parameters()) w.add_(torch.randn_like(w) * 0.3);
        var data = new TensorPairDataset(torch.randint(0, Vocab, new long[] { N, Context }), torch.randint(0, Vocab, new long[] { N, Context }));
        data.Y[2, 3] = torch.tensor(-100L);
        var queries = new TensorPairDataset(data.X.narrow(0, 0, 2), data.Y.narrow(0, 0, 2).flip(1));
        var layers = TrackedLayer.Find(model);
        Assert.Equal("wte", layers[0].Name);
        long p = layers.Sum(l => l.NumParams);
        const double eps = 1e-5;
        var h = torch.zeros(p, p, dtype: ScalarType.Float64);
        for (long i = 0; i < p; i++)
        {
            var e = torch.zeros(p, dtype: ScalarType.Float64); e[i] = torch.tensor(1.0, ScalarType.Float64);
            Perturb(layers, e, eps); var plus = MeanGradient(model, layers, data);
            Perturb(layers, e, -2 * eps); var minus = MeanGradient(model, layers, data);
            Perturb(layers, e, eps);
            h[.., i] = (plus - minus) / (2 * eps);
        }
        h = (h + h.mT) / 2;
        // Away from a minimum the Hessian is indefinite: damp it into a positive definite system.
        double lambda = Math.Max(0, -torch.linalg.eigvalsh(h).min().item<double>()) + 0.5;
        var gz = GptAttributionTests.OracleGradients(model, layers, data);
        var gq = GptAttributionTests.OracleGradients(model, layers, queries);
        var expected = gq.matmul(torch.linalg.solve(h + lambda * torch.eye(p, dtype: ScalarType.Float64), gz.mT));
        var task = new LanguageModelTask();
        // The curvature products themselves, embedding blocks included (each layer's rows checked).
        var op = new CurvatureOperator(model, task, layers, data, HessianKind.True, batchSize: 4);
        var v = torch.randn(3, p, dtype: ScalarType.Float64);
        var hv = op.Apply(v);
        var hvExpected = v.matmul(h);
        long offset = 0;
        foreach (var l in layers)
        {
            double r = Oracles.RelErr(hv.narrow(1, offset, l.NumParams), hvExpected.narrow(1, offset, l.NumParams));
            Assert.True(r < 1e-6, $"{l.Name}: H v relative error {r}");
            offset += l.NumParams;
        }
        var wte = h.narrow(0, 0, layers[0].NumParams).narrow(1, 0, layers[0].NumParams);
        Assert.True(wte.abs().max().item<double>() > 1e-3, "the token embedding's own Hessian block is not zero");
        // The token embedding tracked alone: its own block.
        var alone = new CurvatureOperator(model, task, layers.Take(1).ToList(), data, HessianKind.True, batchSize: 4);
        var va = v.narrow(1, 0, layers[0].NumParams);
        double ra = Oracles.RelErr(alone.Apply(va), va.matmul(wte));
        Assert.True(ra < 1e-6, $"wte alone: H v relative error {ra}");
        foreach (var solver in new[] { HvpSolver.Explicit, HvpSolver.Cg })
        {
            using var method = new HvpInfluence(model, task, data, solver, new HvpSolverOptions { Damping = lambda, TrainBatchSize = 4, CgTolerance = 1e-10, CgMaxIterations = 500 });
            var scores = method.PairwiseMatrix(queries, data).to(ScalarType.Float64);
            double rel = Oracles.RelErr(scores, expected);
            Assert.True(rel < 1e-5, $"{solver}: relative error {rel}");
        }
    }
}
