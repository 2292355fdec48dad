using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>A conv layer followed by a linear read-out, with its pieces exposed so that an oracle can
/// rebuild the forward pass by hand (im2col patches via torch's unfold, explicit matrix products).</summary>
public sealed class ConvReadout : nn.Module<Tensor, Tensor>
{
    public readonly Conv2d conv;
    public readonly Linear fc;

    public ConvReadout(int inC = 2, int outC = 3, int size = 5, int classes = 3) : base(nameof(ConvReadout))
    {
        conv = nn.Conv2d(inC, outC, 3, stride: 1, padding: 1);
        fc = nn.Linear(outC * size * size, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc.call(nn.functional.tanh(conv.call(x)).flatten(1));
}

/// <summary>
/// K-FAC on Conv2d follows KFC (Grosse & Martens 2016): A = E over examples and positions of a aᵀ,
/// S = E over examples of Σ_t g_t g_tᵀ. Checked against an explicit float64 construction that
/// does not use the library's hooks or im2col: patches from torch's unfold, the conv output as an
/// explicit product W·a, output gradients from autograd on that explicit output.
/// </summary>
public class KfacConvTests
{
    /// <summary>Explicit A and S of the conv layer (empirical Fisher: true labels) and of the read-out.</summary>
    static (Tensor AConv, Tensor SConv, Tensor AFc, Tensor SFc, long T) ExplicitFactors(ConvReadout model, Tensor x, Tensor y)
    {
        long b = x.shape[0];
        var w = model.conv.weight!.detach();                                  // [Out, C, k, k]
        long outC = w.shape[0];
        var patches = nn.functional.unfold(x, 3, padding: 1);                  // [B, C·k·k, T]
        long t = patches.shape[2];
        var a = torch.cat(new[] { patches.transpose(1, 2), torch.ones(b, t, 1, dtype: x.dtype) }, 2);   // [B, T, In+1]
        var wFull = torch.cat(new[] { w.reshape(outC, -1), model.conv.bias!.detach().unsqueeze(1) }, 1); // [Out, In+1]
        var s = a.matmul(wFull.mT).detach().requires_grad_(true);             // [B, T, Out]: the conv output
        int side = (int)Math.Sqrt(t);
        // Sanity: the explicit product is the conv module's output.
        using (no_grad())
            Assert.True(s.transpose(1, 2).reshape(b, outC, side, side).allclose(model.conv.call(x), rtol: 1e-12, atol: 1e-12));
        var h = nn.functional.tanh(s.transpose(1, 2).reshape(b, outC, side, side)).flatten(1);
        var hd = h.detach().requires_grad_(true);
        var logits = model.fc.call(hd);
        var loss = nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum);
        var gr = torch.autograd.grad(new[] { loss }, new[] { logits, hd }, retain_graph: true);
        Tensor gLogits = gr[0], gH = gr[1];
        var g = torch.autograd.grad(new[] { h }, new[] { s }, new[] { gH })[0];   // [B, T, Out], per example (loss is a sum)

        var aFlat = a.reshape(-1, a.shape[2]);
        var aConv = aFlat.mT.matmul(aFlat) / (b * t);                         // E over examples and positions
        var sConv = torch.zeros(outC, outC, dtype: x.dtype);
        for (int i = 0; i < b; i++)
            for (int p = 0; p < t; p++) sConv += torch.outer(g[i, p], g[i, p]);
        sConv /= b;                                                            // E over examples of Σ_t g_t g_tᵀ
        var aFc = torch.cat(new[] { hd.detach(), torch.ones(b, 1, dtype: x.dtype) }, 1);
        return (aConv, sConv, aFc.mT.matmul(aFc) / b, gLogits.mT.matmul(gLogits) / b, t);
    }

    static Tensor Rebuild(Tensor q, Tensor eig) => q.matmul(torch.diag(eig)).matmul(q.mT);

    static (ConvReadout Model, TensorPairDataset Train) Problem(int n = 20)
    {
        torch.manual_seed(4242);
        var model = new ConvReadout().to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(n, 2, 5, 5, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));
        return (model, train);
    }

    [Fact]
    public void ConvKfacFactorsAreTheKfcConstruction()
    {
        var (model, train) = Problem();
        var task = new ClassificationTask();
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Kfac, Fisher = FisherType.Empirical, TrainBatchSize = 7 }).Fit(train)!;
        var (aConv, sConv, aFc, sFc, t) = ExplicitFactors(model, train.X, train.Y);
        Assert.Equal(25, t);
        Assert.Equal(new[] { "conv", "fc" }, factors.Layers.Select(l => l.Name));
        var conv = factors.Layers[0];
        var fc = factors.Layers[1];
        void Same(Tensor fitted, Tensor expected, string what)
        {
            double rel = ((fitted - expected).norm() / expected.norm()).item<double>();
            Assert.True(rel < 1e-10, $"{what}: relative error {rel}");
        }
        Same(Rebuild(conv.QA!, conv.EigA!), aConv, "conv A");
        Same(Rebuild(conv.QS!, conv.EigS!), sConv, "conv S");
        Same(Rebuild(fc.QA!, fc.EigA!), aFc, "fc A");
        Same(Rebuild(fc.QS!, fc.EigS!), sFc, "fc S");

        // The K-FAC inverse applied to a gradient-shaped matrix equals (A ⊗ S + λI)⁻¹ vec(V) built explicitly.
        double lam = 1e-3;
        using var pre = conv.Prepare(lam, ScalarType.Float64, CPU);
        torch.manual_seed(7);
        var v = torch.randn(1, conv.QS!.shape[0], conv.QA!.shape[0], dtype: ScalarType.Float64);
        var kron = torch.kron(sConv, aConv);                                   // row-major vec of [Out, In]
        var expected = torch.linalg.solve(kron + lam * torch.eye(kron.shape[0], dtype: ScalarType.Float64), v.flatten()).reshape(v.shape);
        Same(pre.Apply(v), expected, "conv (A⊗S + λI)⁻¹ v");
    }
}

/// <summary>The heuristic damping (the CLI default): λ = 0.1 × mean of the layer's eigenvalues Λ,
/// per layer. Since the mean of a Kronecker product's eigenvalues is
/// mean(λ_S)·mean(λ_A) = tr(S)/Out · tr(A)/In, and the mean of EK-FAC's refit eigenvalues (or of the
/// diagonal E[G⊙G]) is E‖G‖²_F/(Out·In) because the eigenbasis rotation keeps Frobenius norms,
/// the expected values follow from per-example gradients and covariances computed independently.</summary>
public class HeuristicDampingTests
{
    [Theory]
    [InlineData(FactorStrategy.Diagonal)]
    [InlineData(FactorStrategy.Kfac)]
    [InlineData(FactorStrategy.Ekfac)]
    public void IsATenthOfTheMeanEigenvaluePerLayer(FactorStrategy strategy)
    {
        torch.manual_seed(99);
        var model = new ConvNet().to(ScalarType.Float64);
        int n = 16;
        var train = new TensorPairDataset(torch.randn(n, 2, 8, 8, dtype: ScalarType.Float64), torch.randint(0, 4, new long[] { n }));
        var task = new ClassificationTask();
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = strategy, Fisher = FisherType.Empirical, TrainBatchSize = 5 }).Fit(train)!;
        var layers = TrackedLayer.Find(model);
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var f = new InfluenceFunction(model, task, factors, new ScoreOptions());
        var dampings = f.Dampings();

        // Explicit covariances for K-FAC (A over examples and positions, S over examples).
        using var capture = new GradientCapture(model, layers);
        var idx = Enumerable.Range(0, n).ToArray();
        var y = train.Targets(idx);
        var (_, lbs) = capture.Run(model, train.Inputs(idx), l => task.TrainLoss(l, y));
        long offset = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            var l = layers[i];
            double expected;
            if (strategy == FactorStrategy.Kfac)
            {
                var a = lbs[i].A.reshape(-1, l.In);
                var g = lbs[i].G.reshape(-1, l.Out);
                double trA = a.square().sum().item<double>() / a.shape[0];     // tr(E[a aᵀ])
                double trS = g.square().sum().item<double>() / n;              // tr(E_examples[Σ_t g gᵀ])
                expected = 0.1 * (trA / l.In) * (trS / l.Out);
            }
            else
            {
                var gl = gz.narrow(1, offset, l.NumParams);
                expected = 0.1 * gl.square().mean().item<double>();
            }
            offset += l.NumParams;
            Assert.True(expected > 0);
            Assert.True(Math.Abs(dampings[i] - expected) <= 1e-9 * expected, $"{l.Name}: heuristic damping {dampings[i]:G6}, expected 0.1 x mean eigenvalue = {expected:G6}");
            using var pre = factors.Layers[i].Prepare(null, ScalarType.Float64, CPU);
            Assert.Equal(dampings[i], pre.Damping);
        }

        // Scoring without a damping uses exactly these values (per layer).
        var queries = new TensorPairDataset(train.X.narrow(0, 0, 3), train.Y.narrow(0, 0, 3));
        var heuristic = f.PairwiseMatrix(queries, train);
        var perLayer = factors.Layers.Select((lf, i) => new Factors(factors.Manifest with { Layers = new[] { factors.Manifest.Layers[i] } }, new List<LayerFactors> { lf })).ToList();
        var summed = perLayer.Select((pf, i) => new InfluenceFunction(model, task, pf, new ScoreOptions { Damping = dampings[i] }).PairwiseMatrix(queries, train))
            .Aggregate((x, z) => x + z);
        Assert.True(heuristic.allclose(summed, rtol: 1e-5, atol: 1e-7));
        // Identity has no eigenvalues: its heuristic damping is 0.
        using var id = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Identity }).Fit(train)!;
        Assert.All(new InfluenceFunction(model, task, id).Dampings(), d => Assert.Equal(0, d));
    }
}
