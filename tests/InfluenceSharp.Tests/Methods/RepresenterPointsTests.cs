using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Representer;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>Representer points: the representer theorem's decomposition of the refit layer's logits.</summary>
public class RepresenterPointsTests
{
    [Fact]
    public void TheDecompositionReproducesTheLogitsExactly()
    {
        torch.manual_seed(TestSeed.For());
        var body = nn.Sequential(("fc1", nn.Linear(4, 6)), ("t", nn.Tanh()));
        var model = nn.Sequential(("body", body), ("fc2", nn.Linear(6, 3))).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(20, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 20 }));
        var qx = torch.randn(5, 4, dtype: ScalarType.Float64);
        var qy = torch.tensor(new long[] { 0, 1, 2, 1, 0 });
        const double l2 = 0.01;
        var m = new RepresenterPoints(model, new RepresenterOptions { L2 = l2, Tolerance = 1e-13, TrainBatchSize = 7 });
        var (theta, alpha, f) = m.Fit(train);
        Tensor fq, ftrain;
        using (torch.no_grad()) { fq = body.forward(qx); ftrain = body.forward(train.X); }
        Assert.True((f - ftrain).abs().max().item<double>() < 1e-12);

        // Θ* is a stationary point of (1/n) Σ CE(Θ f_i, p_i) + λ‖Θ‖² (checked by autograd)...
        var p = nn.functional.softmax(model.forward(train.X).detach(), 1);
        var th = theta.clone().requires_grad_(true);
        var z = ftrain.matmul(th.mT);
        var obj = (z.logsumexp(1) - (p * z).sum(1)).mean() + l2 * th.square().sum();
        obj.backward();
        Assert.True(th.grad!.abs().max().item<double>() < 1e-10, $"gradient at the fit {th.grad.abs().max().item<double>():G3}");

        // ...so its logits decompose exactly over the training examples: Θ* f_t = Σ_i α_i (f_i · f_t).
        var logits = fq.matmul(theta.mT);
        var decomposed = fq.matmul(ftrain.mT).matmul(alpha);
        double err = (decomposed - logits).abs().max().item<double>() / logits.abs().max().item<double>();
        Assert.True(err < 1e-8, $"representer decomposition: relative error {err:G3}");

        // The scores are the terms of the query label's logit.
        var scores = m.PairwiseMatrix(new TensorPairDataset(qx, qy), train).to(ScalarType.Float64);
        var byLabel = logits.gather(1, qy.unsqueeze(1)).squeeze(1);
        Assert.True((scores.sum(1) - byLabel).abs().max().item<double>() < 1e-5 * byLabel.abs().max().item<double>());
        var expected = fq.matmul(ftrain.mT) * alpha.index_select(1, qy).mT;
        Assert.True((scores - expected).abs().max().item<double>() < 1e-6 * expected.abs().max().item<double>());

        var self = m.SelfInfluence(train);
        var y = train.Y.data<long>().ToArray();
        for (int i = 0; i < 20; i++)
            Assert.Equal(alpha[i, y[i]].item<double>() * ftrain[i].square().sum().item<double>(), self[i], 12);
    }
}
