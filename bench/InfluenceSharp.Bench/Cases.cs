using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

public static class Cases
{
    /// <summary>Experiments that retrain many models (minutes to hours): run by name, never by `all`.</summary>
    public static readonly HashSet<string> NotInAll = new() { "lds-solvers", "d3m-lr", "index-synthetic", "index-real", "index-real-trak", "index-rules", "peers-cnn-conv", "resnet18-224-stages", "imagefolder-hash", "lm-throughput" };

    /// <summary>Names that stand for several cases, each run in its own process in this order.</summary>
    public static readonly Dictionary<string, List<string>> Groups = new() { ["hvp-solvers"] = HvpCostCases.Group(), ["unrolled-cost"] = UnrolledCases.Group() };

    static Cases()
    {
        HvpCostCases.Register(All, NotInAll);
        UnrolledCases.Register(All, NotInAll);
        UnrolledLinearityCases.Register(All, NotInAll);
    }

    public static readonly Dictionary<string, Func<BenchContext, IEnumerable<BenchResult>>> All = new()
    {
        ["gemm"] = Gemm,
        ["train"] = Train,
        ["ekfac-mlp"] = c => EkfacSelf(c, "mlp"),
        ["ekfac-smallcnn"] = c => EkfacSelf(c, "smallcnn"),
        ["ekfac-scaling"] = EkfacScaling,
        ["pairwise-mlp"] = c => Pairwise(c, 0),
        ["pairwise-mlp-rank32"] = c => Pairwise(c, 32),
        ["tracin-last"] = FeatureCases.TracInLast,
        ["trak-features"] = FeatureCases.TrakFeatures,
        ["lds-solvers"] = HvpCases.LdsSolvers,
        ["d3m-lr"] = D3mCases.LogReg,
        ["index-synthetic"] = IndexCases.Synthetic,
        ["index-real"] = IndexCases.Real,
        ["index-real-trak"] = c => IndexCases.Real(c, tracInLast: false),
        ["imagenet-resnet18"] = c => ImageNetCases.ResNet(c, "resnet18"),
        ["imagenet-resnet50"] = c => ImageNetCases.ResNet(c, "resnet50"),
        ["eigh"] = ImageNetCases.Eigh,
        ["peers-mlp"] = c => PeerCases.Run(c, "mlp"),
        ["peers-cnn"] = c => PeerCases.Run(c, "cnn"),
        ["peers-cnn-conv"] = c => PeerCases.Run(c, "cnn", convOnly: true),
        ["profile-peers-cnn"] = PeerProfile.Cnn,
        ["peers-trak-quick"] = PeerCases.TrakQuick,
        ["layout-peers-cnn"] = PeerLayout.Cnn,
        ["trak-kernel"] = KernelCases.Run,
        ["rank-one-score"] = RankOneScoreCases.Run,
        ["im2col"] = Im2ColCases.Run,
        ["gram"] = GramCases.Run,
        ["checksum"] = ChecksumCases.Run,
        ["index-rules"] = IndexRuleCases.Run,
        ["rng"] = RngCases.Run,
        ["rng-regen"] = RngCases.Regen,
        ["resnet18-224-stages"] = StreamCases.ResNet18Stages,
        ["imagefolder-hash"] = StreamCases.ImageFolderHash,
        ["lm-throughput"] = LmCases.Throughput,
    };

    /// <summary>fp32 GEMM rate: best of several 2048³ products (2·n³ FLOPs each).</summary>
    static IEnumerable<BenchResult> Gemm(BenchContext c)
    {
        const int n = 2048;
        var a = torch.randn(n, n); var b = torch.randn(n, n);
        for (int i = 0; i < 2; i++) a.mm(b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 8; i++) best = Math.Min(best, Measure.Seconds(() => a.mm(b).Dispose()));
        yield return new BenchResult("gemm", "fp32 mm 2048x2048x2048", 0, best, 2.0 * n * n * n / 1e9, Measure.PeakRssMiB(), "best of 8");
    }

    /// <summary>Training throughput per model: one epoch-sized run after a warm-up batch.</summary>
    static IEnumerable<BenchResult> Train(BenchContext c)
    {
        var (fm, _, src) = c.Data(Math.Min(c.N, 20000));
        var cifarLike = RandomImages(2048, 3, 32, 32);
        foreach (var (arch, data, count) in new[] { ("logreg", fm, 20000), ("mlp", fm, 20000), ("smallcnn", fm, 10000), ("resnet9", cifarLike, 1024) })
        {
            var d = data.Count > count ? data.Subset(Enumerable.Range(0, count).ToArray()) : data;
            var spec = ModelSpec.For(arch, d.Channels, d.Height, d.Width, 10);
            var o = new TrainOptions { Epochs = 1, BatchSize = arch == "resnet9" ? 128 : 128, Seed = 0 };
            var t = Measure.Seconds(() => new Trainer(o).Train(spec, d, null, null));
            yield return new BenchResult("train", arch, d.Count, t, 0, Measure.PeakRssMiB(), arch == "resnet9" ? "random 3x32x32 data, batch 128" : $"{src}, batch 128");
        }
    }

    static ImageDataset RandomImages(int n, int ch, int h, int w)
    {
        var rng = new Random(1);
        var px = new byte[n * ch * h * w]; rng.NextBytes(px);
        return new ImageDataset("random", px, Enumerable.Range(0, n).Select(_ => rng.Next(10)).ToArray(), ch, h, w, 10);
    }

    /// <summary>A model with trained-like weights: a short training run on the first 10k examples.</summary>
    static nn.Module<Tensor, Tensor> Model(BenchContext c, string arch)
    {
        var (train, _, _) = c.Data(10000);
        var spec = ModelSpec.For(arch, 1, 28, 28, 10, arch == "mlp" ? new[] { 128 } : null);
        var m = new Trainer(new TrainOptions { Epochs = 1, Seed = 0 }).Train(spec, train, null, null).Model;
        m.eval();
        return m;
    }

    /// <summary>EK-FAC fit (covariance, eigendecomposition, lambda) + self-influence over N examples.</summary>
    static IEnumerable<BenchResult> EkfacSelf(BenchContext c, string arch) => EkfacSelfAt(c, arch, c.N, "ekfac-" + arch);

    static IEnumerable<BenchResult> EkfacSelfAt(BenchContext c, string arch, int n, string name)
    {
        var model = Model(c, arch);
        var (train, _, src) = c.Data(n);
        var task = new ClassificationTask();
        var prof = new Diagnostics.Profiler();
        var fitter = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 512, PartitionSize = n }, prof);
        double total = 0;
        Factors? factors = null;
        total += Measure.Seconds(() => factors = fitter.Fit(train));
        var f = new InfluenceFunction(model, task, factors!, new ScoreOptions { TrainBatchSize = 512 }, prof);
        total += Measure.Seconds(() => f.SelfInfluence(train));
        var flops = Flops.PerExample(fitter.Layers, arch);
        foreach (var (stage, secs, _) in prof.Stages)
        {
            double gf = stage switch
            {
                "Fit Covariance" => n * (flops.Capture + flops.Covariance) / 1e9,
                "Fit Lambda" => n * (flops.Capture + flops.Lambda) / 1e9,
                "Compute Self-Influence Score" => n * (flops.Capture + flops.Self) / 1e9,
                _ => 0,
            };
            yield return new BenchResult(name, stage, stage.StartsWith("Perform") ? 0 : n, secs, gf, Measure.PeakRssMiB(), src);
        }
        yield return new BenchResult(name, "end to end (fit + self)", n, total, 0, Measure.PeakRssMiB(), src);
    }

    static IEnumerable<BenchResult> EkfacScaling(BenchContext c)
    {
        foreach (var n in new[] { 10000, 20000, 40000, 60000 })
            foreach (var r in EkfacSelfAt(c, "mlp", n, $"ekfac-mlp-{n / 1000}k").Where(r => r.Stage.StartsWith("end")))
                yield return r;
    }

    /// <summary>Pairwise EK-FAC scores, 1,000 queries × N training examples, Mlp 784-128-10.</summary>
    static IEnumerable<BenchResult> Pairwise(BenchContext c, int rank)
    {
        var model = Model(c, "mlp");
        var (train, test, src) = c.Data(c.N);
        var queries = test.Subset(Enumerable.Range(0, 1000).ToArray());
        var task = new ClassificationTask();
        var prof = new Diagnostics.Profiler();
        var factors = new FactorFitter(model, task, new FactorOptions { TrainBatchSize = 512, PartitionSize = c.N }, prof).Fit(train)!;
        var f = new InfluenceFunction(model, task, factors, new ScoreOptions { TrainBatchSize = 512, QueryRank = rank }, prof);
        long nParams = f.Layers.Sum(l => l.NumParams);
        double checksum = 0;
        double t = Measure.Seconds(() => f.Pairwise(queries, train, (_, block) => checksum += block.sum().item<float>()));
        double boundGflop = 2.0 * queries.Count * train.Count * nParams / 1e9;
        string name = rank > 0 ? $"pairwise-mlp-rank{rank}" : "pairwise-mlp";
        foreach (var (stage, secs, _) in prof.Stages.Where(s => s.Name is "Precondition Queries" or "Compute Pairwise Score"))
            yield return new BenchResult(name, stage, stage == "Compute Pairwise Score" ? train.Count : queries.Count, secs,
                stage == "Compute Pairwise Score" ? boundGflop : 0, Measure.PeakRssMiB(), $"{src}; GFLOP = 2*nq*ntrain*nparams ({nParams} params)");
        yield return new BenchResult(name, "pairwise total (precondition + score)", train.Count, t, boundGflop, Measure.PeakRssMiB(), $"1000 queries, rank {rank}");
    }
}

/// <summary>Hand-counted FLOPs per example for each EK-FAC stage (multiply-add = 2 FLOPs).</summary>
public sealed record Flops(double Capture, double Covariance, double Lambda, double Self)
{
    public static Flops PerExample(IReadOnlyList<Gradients.TrackedLayer> layers, string arch) => PerExample(layers, l => Positions(l, arch));

    /// <summary>The same with the output positions T of each layer given (1 for a Linear layer).</summary>
    public static Flops PerExample(IReadOnlyList<Gradients.TrackedLayer> layers, Func<Gradients.TrackedLayer, double> positions)
    {
        // Forward + backward-to-outputs ≈ 2 × forward MACs × 2 FLOPs; positions T per layer.
        double cap = 0, cov = 0, lam = 0, self = 0;
        foreach (var l in layers)
        {
            double t = positions(l);
            double macs = t * l.Out * l.InNoBias;
            cap += 2 * 2 * macs;
            cov += 2 * t * (l.In * (double)l.In + l.Out * (double)l.Out);
            double o = l.Out, i = l.In;
            // Rank-one layers: rotate g and a, then one [Out, In] product per batch row. Conv layers:
            // the cheaper of rotate-then-contract and contract-then-rotate (LayerBatch.Rotated).
            double work = t == 1 ? 2 * (i * i + o * o) + 2 * o * i
                : Math.Min(2 * t * (i * i + o * o), 2 * (o * o * i + o * i * i)) + 2 * t * o * i;
            lam += work;
            self += work;
        }
        return new Flops(cap, cov, lam, self);
    }

    static double Positions(Gradients.TrackedLayer l, string arch) => arch == "smallcnn" && l.IsConv ? (l.Name == "conv1" ? 28 * 28 : 14 * 14) : 1;
}
