using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

public class TrakTests
{
    const int D = 4, K = 3;           // logistic regression 4 → 3: p = 3·5 = 15 parameters

    static TensorPairDataset Data(int n) =>
        new(torch.randn(n, D, dtype: ScalarType.Float64), torch.randint(0, K, new long[] { n }));

    static nn.Module<Tensor, Tensor> LogReg() => new LogisticRegression(D, K).to(ScalarType.Float64);

    /// <summary>φ(z) = ∇_W margin(z) / √p written out: ∂margin/∂logits = onehot_y − softmax over the
    /// other classes (0 at y), times [x, 1]; Q = 1 − softmax_y.</summary>
    static (Tensor Phi, Tensor Q) ByHand(nn.Module<Tensor, Tensor> model, TensorPairDataset data)
    {
        using var _ = no_grad();
        var logits = model.forward(data.X);
        var onehot = nn.functional.one_hot(data.Y, K).to(ScalarType.Float64);
        var others = nn.functional.softmax(logits.masked_fill(onehot.to(ScalarType.Bool), double.NegativeInfinity), 1);
        var dm = onehot - others;
        var a = torch.cat(new[] { data.X, torch.ones(data.Count, 1, dtype: ScalarType.Float64) }, 1);
        var phi = (dm.unsqueeze(2) * a.unsqueeze(1)).reshape(data.Count, -1) / Math.Sqrt(K * (D + 1));
        var q = 1 - nn.functional.softmax(logits, 1).gather(1, data.Y.unsqueeze(1)).squeeze(1);
        return (phi, q);
    }

    static double RelErr(Tensor a, Tensor b) =>
        ((a.to(ScalarType.Float64) - b.to(ScalarType.Float64)).norm() / b.to(ScalarType.Float64).norm()).item<double>();

    static TrakOptions Identity => new()
    {
        TrainBatchSize = 7, BlockSize = 16,
        Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Identity },
    };

    [Fact]
    public void IdentityProjectionWithoutDampingIsTheClosedFormOnLogisticRegression()
    {
        torch.manual_seed(TestSeed.For());
        var model = LogReg();
        var train = Data(40); var queries = Data(6);
        using var trak = new Trak(new[] { model }, Identity);
        Assert.Equal(15, trak.ProjectedDim);
        var (phi, q) = ByHand(model, train);
        var (phiQ, _) = ByHand(model, queries);
        // The margin gradient sums to zero over classes: Φ has a 5-dimensional null space, so λ = 0
        // means the pseudo-inverse.
        var kinv = torch.linalg.pinv(phi.mT.matmul(phi), hermitian: true);
        var expected = phiQ.matmul(kinv).matmul(phi.mT) * q.unsqueeze(0);
        var scores = trak.PairwiseMatrix(queries, train);
        Assert.True(RelErr(scores, expected) < 1e-5, $"relative error {RelErr(scores, expected)}");
        Assert.Equal(10, trak.Diagnostics.Single().Rank);
        Assert.Equal(KernelSolver.Eigh, trak.Diagnostics.Single().Solver);
        var self = trak.SelfInfluence(train);
        var selfExpected = (phi.matmul(kinv) * phi).sum(1) * q;
        Assert.Equal(Oracles.Flat(selfExpected), self, new ToleranceComparer(1e-8));
        // The features themselves are φ and Q.
        var f = trak.TrainFeatures(train);
        Assert.True(f["features"].allclose(phi, rtol: 1e-10, atol: 1e-14));
        Assert.True(f["q"].squeeze(1).allclose(q, rtol: 1e-10, atol: 1e-14));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EnsembleAveragesKernelScoresAndOutToLossOverModels(bool referenceRescaling)
    {
        torch.manual_seed(TestSeed.For());
        var models = new[] { LogReg(), LogReg() };
        var train = Data(30); var queries = Data(5);
        double lambda = 0.05;
        using var trak = new Trak(models, Identity with { Damping = lambda, ReferenceRescaling = referenceRescaling });
        Tensor inner = torch.zeros(5, 30, dtype: ScalarType.Float64), qsum = torch.zeros(30, dtype: ScalarType.Float64);
        Tensor selfInner = torch.zeros(30, dtype: ScalarType.Float64);
        foreach (var m in models)
        {
            var (phi, q) = ByHand(m, train);
            var (phiQ, _) = ByHand(m, queries);
            var w = torch.linalg.inv(phi.mT.matmul(phi) + lambda * torch.eye(15, dtype: ScalarType.Float64));
            if (referenceRescaling) w = w / w.abs().mean();
            inner = inner + phiQ.matmul(w).matmul(phi.mT);
            selfInner = selfInner + (phi.matmul(w) * phi).sum(1);
            qsum = qsum + q;
        }
        var expected = inner / 2 * (qsum / 2).unsqueeze(0);
        var scores = trak.PairwiseMatrix(queries, train);
        Assert.True(RelErr(scores, expected) < 1e-5, $"relative error {RelErr(scores, expected)}");
        Assert.All(trak.Diagnostics, d => Assert.Equal(KernelSolver.Cholesky, d.Solver));
        Assert.Equal(Oracles.Flat(selfInner / 2 * (qsum / 2)), trak.SelfInfluence(train), new ToleranceComparer(1e-8));
        // Blocks taken in chunks of rows (kernel sums and self-influence): the same scores.
        using (var chunked = new Trak(models, Identity with { Damping = lambda, ReferenceRescaling = referenceRescaling }) { RowChunk = 7 })
        {
            Assert.True(RelErr(chunked.PairwiseMatrix(queries, train), expected) < 1e-5);
            Assert.Equal(Oracles.Flat(selfInner / 2 * (qsum / 2)), chunked.SelfInfluence(train), new ToleranceComparer(1e-8));
        }
        // A single model is not the ensemble.
        using var single = new Trak(models.Take(1).ToList(), Identity with { Damping = lambda, ReferenceRescaling = referenceRescaling });
        Assert.True(RelErr(single.PairwiseMatrix(queries, train), expected) > 1e-3);
    }

    /// <summary>A projection with orthonormal rows (k ≥ p) or Kronecker factors at least as wide as
    /// the layer leave TRAK (λ = 0) unchanged; a random k &lt; p projection only approximates it.</summary>
    [Fact]
    public void ProjectionsThatPreserveTheGradientSpaceGiveTheSameScores()
    {
        torch.manual_seed(TestSeed.For());
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);     // 25 + 18 = 43 parameters
        var train = Data(60); var queries = Data(4);
        using var id = new Trak(new[] { model }, Identity);
        var reference = id.PairwiseMatrix(queries, train);
        foreach (var proj in new[]
        {
            new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Orthogonal, Dim = 64, Seed = 9 },
            new ProjectionOptions { Layout = ProjectionLayout.Kronecker, Kind = ProjectionKind.Gaussian, GradientDim = 8, ActivationDim = 8 },
        })
        {
            using var t = new Trak(new[] { model }, Identity with { Projection = proj });
            var s = t.PairwiseMatrix(queries, train);
            Assert.True(RelErr(s, reference) < 1e-4, $"{proj.Layout}: relative error {RelErr(s, reference)}");
        }
        using var small = new Trak(new[] { model }, Identity with { Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Dim = 20 } });
        double err = RelErr(small.PairwiseMatrix(queries, train), reference);
        Assert.True(err > 1e-3, $"a 20-dimensional projection of 43 parameters reproduced the scores ({err})");
    }

    /// <summary>λ = 0 with a full-rank kernel: the Auto solver takes the Cholesky inverse instead of the
    /// eigendecomposition, and the scores are still the pseudo-inverse's. A random 8-dimensional
    /// projection of the 15 parameters leaves Φ (rank 10: the margin gradient's sum-to-zero null space)
    /// with full column rank 8.</summary>
    [Fact]
    public void FullRankKernelWithoutDampingUsesCholeskyAndMatchesThePseudoInverse()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var model = LogReg();
        var train = Data(50); var queries = Data(6);
        var options = Identity with { Projection = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Gaussian, Dim = 8, Seed = 3 } };
        using var auto = new Trak(new[] { model }, options);
        using var eigh = new Trak(new[] { model }, options with { Solver = KernelSolver.Eigh });
        var f = eigh.TrainFeatures(train);
        var phi = f["features"]; var q = f["q"].squeeze(1);
        var phiQ = eigh.TrainFeatures(queries)["features"];
        var expected = phiQ.matmul(torch.linalg.pinv(phi.mT.matmul(phi), hermitian: true)).matmul(phi.mT) * q.unsqueeze(0);
        var scores = auto.PairwiseMatrix(queries, train);
        double err = RelErr(scores, expected), errEigh = RelErr(eigh.PairwiseMatrix(queries, train), expected);
        Assert.True(err < 1e-6, $"seed {seed}: relative error {err} (Eigh's {errEigh})");
        var d = auto.Diagnostics.Single();
        Assert.Equal(KernelSolver.Cholesky, d.Solver);
        Assert.Equal(8, d.Rank);
        // the power-iteration estimate of λ_max (a diagnostic) is the eigendecomposition's to 1%
        double maxEig = torch.linalg.eigvalsh(phi.mT.matmul(phi)).max().item<double>();
        Assert.True(Math.Abs(d.MaxEigenvalue - maxEig) < 1e-2 * maxEig, $"seed {seed}: λ_max {d.MaxEigenvalue} against {maxEig}");
        Assert.Equal(eigh.SelfInfluence(train), auto.SelfInfluence(train), new ToleranceComparer(1e-6));
        Assert.Equal(KernelSolver.Eigh, eigh.Diagnostics.Single().Solver);
    }

    /// <summary>The λ = 0 Cholesky shortcut is taken only when the smallest eigenvalue is far above
    /// Eigh's cutoff: kernels V diag(λ) Vᵀ with a known spectrum, one of which Cholesky factorises
    /// although Eigh would cut its smallest eigenvalue.</summary>
    [Theory]
    [InlineData(1e-4, true)]      // cond 1e4: far above the cutoff
    [InlineData(1e-7, true)]      // 1,000× above the cutoff 1e-10
    [InlineData(5e-10, false)]    // within the margin of 100: left to Eigh
    [InlineData(1e-12, false)]    // below the cutoff: Cholesky succeeds, but Eigh would drop it
    public void CholeskyShortcutOnlyForComfortablyFullRankKernels(double smallest, bool accepted)
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        const int k = 40;
        var (v, _) = torch.linalg.qr(torch.randn(k, k, dtype: ScalarType.Float64));
        var lambda = torch.logspace(0, 3, k, dtype: ScalarType.Float64);    // 1 … 1000
        lambda[0] = torch.tensor(smallest * 1000, dtype: ScalarType.Float64);
        var kernel = (v * lambda.unsqueeze(0)).matmul(v.mT);
        kernel = (kernel + kernel.mT) / 2;
        bool ok = Trak.TryFullRankCholesky(kernel, 1e-10, out var inverse, out var maxEig);
        Assert.Equal(accepted, ok);
        if (!ok) return;
        Assert.True(maxEig <= 1000 * (1 + 1e-12) && maxEig > 990, $"seed {seed}: λ_max {maxEig}");
        var exact = (v * lambda.reciprocal().unsqueeze(0)).matmul(v.mT);
        double err = ((inverse - exact).norm() / exact.norm()).item<double>();
        Assert.True(err < 1e-6, $"seed {seed}: inverse relative error {err}");
    }

    /// <summary>The kernel accumulated from the upper triangle of column blocks equals the full
    /// product, for widths below the blocking threshold, divisible by 4 and not.</summary>
    [Theory]
    [InlineData(300)]
    [InlineData(1024)]
    [InlineData(1103)]
    public void BlockedGramEqualsTheFullProduct(int k)
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var p = torch.randn(37, k, dtype: ScalarType.Float64);
        var acc = torch.randn(k, k, dtype: ScalarType.Float64);
        var expected = acc + p.mT.matmul(p);
        Trak.AddGram(acc, p);
        double err = ((acc - expected).abs().max() / expected.abs().max()).item<double>();
        Assert.True(err < 1e-12, $"seed {seed}, k {k}: max relative difference {err}");
    }

    [Fact]
    public void ExplicitCholeskyRefusesASingularKernel()
    {
        torch.manual_seed(TestSeed.For());
        using var trak = new Trak(new[] { LogReg() }, Identity with { Solver = KernelSolver.Cholesky });
        var data = Data(20);
        data.X[TensorIndex.Colon, 0] = torch.tensor(0.0, dtype: ScalarType.Float64);   // exact zero rows in Φᵀ Φ
        var e = Assert.Throws<InfluenceSharpException>(() => trak.SelfInfluence(data));
        Assert.Contains("positive definite", e.Message);
    }

    /// <summary>f = the target's logit (∂f/∂logits = onehot_y), Q = 1 + y: easy to write out and far
    /// from the margin's gradient and 1 − p_y.</summary>
    sealed class TargetLogitTask : IAttributionTask
    {
        readonly ClassificationTask inner = new();
        public Tensor TrainLoss(Tensor logits, Tensor targets) => inner.TrainLoss(logits, targets);
        public Tensor QueryMeasure(Tensor logits, Tensor targets) => inner.QueryMeasure(logits, targets);
        public Tensor SampledLoss(Tensor logits, Generator generator) => inner.SampledLoss(logits, generator);
        public Tensor ModelOutput(Tensor logits, Tensor targets) => logits.gather(1, targets.unsqueeze(1)).sum();
        public Tensor OutToLoss(Tensor logits, Tensor targets) => targets.to(logits.dtype) + 1;
    }

    /// <summary>Only the losses: TRAK's output is the task's default.</summary>
    sealed class LossesOnlyTask : IAttributionTask
    {
        public Tensor TrainLoss(Tensor logits, Tensor targets) => logits.square().sum();
        public Tensor QueryMeasure(Tensor logits, Tensor targets) => logits.square().sum();
        public Tensor SampledLoss(Tensor logits, Generator generator) => logits.sum();
    }

    /// <summary>TRAK takes its output function and out-to-loss weight from the same task object the
    /// other methods take their losses from.</summary>
    [Fact]
    public void TrakUsesTheTasksModelOutputAndOutToLoss()
    {
        torch.manual_seed(TestSeed.For());
        var model = LogReg();
        var data = Data(20);
        using var trak = new Trak(new[] { model }, Identity, new TargetLogitTask());
        var f = trak.TrainFeatures(data);
        var a = torch.cat(new[] { data.X, torch.ones(20, 1, dtype: ScalarType.Float64) }, 1);
        var onehot = nn.functional.one_hot(data.Y, K).to(ScalarType.Float64);
        var phi = (onehot.unsqueeze(2) * a.unsqueeze(1)).reshape(20, -1) / Math.Sqrt(K * (D + 1));
        Assert.True(f["features"].allclose(phi, rtol: 1e-10, atol: 1e-14));
        Assert.True(f["q"].squeeze(1).allclose(data.Y.to(ScalarType.Float64) + 1, rtol: 1e-12, atol: 0));
        // The stored settings name the task's own output, so a store written for the margin is not reused.
        Assert.Equal(nameof(TargetLogitTask), trak.Featurizer.Settings["output"]);
    }

    [Fact]
    public void ATaskThatDefinesOnlyItsLossesGivesTrakTheMargin()
    {
        torch.manual_seed(TestSeed.For());
        var model = LogReg();
        var data = Data(12);
        using var byDefault = new Trak(new[] { model }, Identity);
        using var lossesOnly = new Trak(new[] { model }, Identity, new LossesOnlyTask());
        var (phi, q) = ByHand(model, data);
        var f = lossesOnly.TrainFeatures(data);
        Assert.True(f["features"].allclose(phi, rtol: 1e-10, atol: 1e-14));
        Assert.True(f["q"].squeeze(1).allclose(q, rtol: 1e-10, atol: 1e-14));
        // Stores written before the task carried TRAK's output keep their settings key.
        Assert.Equal("ClassificationTrakOutput", byDefault.Featurizer.Settings["output"]);
        Assert.Equal("ClassificationTrakOutput", lossesOnly.Featurizer.Settings["output"]);
    }
}
