using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Bench;

/// <summary>The CNN the peers were timed on: conv1 Conv2d(1,8,5)-ReLU-maxpool2,
/// conv2 Conv2d(8,16,5)-ReLU-maxpool2, fc1 Linear(256,64)-ReLU, fc2 Linear(64,10); 20,522
/// parameters. Not the library's SmallCnn (3×3 convolutions with padding, 16/32 channels, fc1 1568→128).
/// Public with a (numClasses) constructor so that the trainer can rebuild it as a custom model.</summary>
public sealed class PeerCnn : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1, conv2;
    private readonly Linear fc1, fc2;

    public PeerCnn(int numClasses) : base(nameof(PeerCnn))
    {
        conv1 = Conv2d(1, 8, 5);
        conv2 = Conv2d(8, 16, 5);
        fc1 = Linear(256, 64);
        fc2 = Linear(64, numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = functional.max_pool2d(functional.relu(conv1.call(x)), 2);
        x = functional.max_pool2d(functional.relu(conv2.call(x)), 2);
        x = functional.relu(fc1.call(x.flatten(1)));
        return fc2.call(x);
    }
}

/// <summary>
/// Side-by-side cases: the exact shapes the peers (Kronfluence 1.0.1, Captum 0.8, TRAK
/// 0.3.2) were timed on, on this machine kind (2 cores, one run each): the first 5,000 Fashion-MNIST
/// training images, 100 test queries, batch 500, summed cross-entropy; EK-FAC with the empirical
/// Fisher and the heuristic damping; TracInCP over 5 checkpoints (all layers, exact); TRAK with one
/// model and a dense Gaussian projection, k = 2048. Each stage reports seconds (best of two runs where
/// a stage can be repeated and takes under 20 s; TRAK featurisation runs once), the GFLOP it must do
/// (counted by hand, below) and, in the note, the peer's seconds and the ratio peer / ours.
/// </summary>
public static class PeerCases
{
    const int NTrain = 5000, NQuery = 100, Batch = 500, K = 2048, Checkpoints = 5;

    /// <summary>Peer seconds from bench/README.md's peers table (peer / InfluenceSharp at the time / ratio), measured
    /// side by side on the same weights, data and settings, 2 idle cores, one run.</summary>
    static readonly Dictionary<(string Arch, string Stage), (double Seconds, string Peer)> PeerSeconds = new()
    {
        [("mlp", "EK-FAC fit (cov+eigen+lambda)")] = (12.45, "Kronfluence 1.0.1"),
        [("mlp", "EK-FAC self-influence")] = (22.8, "Kronfluence 1.0.1"),
        [("mlp", "EK-FAC pairwise 100 queries")] = (1.87, "Kronfluence 1.0.1"),
        [("mlp", "TracInCP self-influence")] = (8.17, "Captum 0.8"),
        [("mlp", "TracInCP pairwise 100 queries")] = (15.2, "Captum 0.8"),
        [("mlp", "TRAK featurize 5,000")] = (29.0, "TRAK 0.3.2"),
        [("mlp", "TRAK pairwise 100 queries")] = (1.39, "TRAK 0.3.2"),
        [("cnn", "EK-FAC fit (cov+eigen+lambda)")] = (5.53, "Kronfluence 1.0.1"),
        [("cnn", "EK-FAC self-influence")] = (4.24, "Kronfluence 1.0.1"),
        [("cnn", "EK-FAC pairwise 100 queries")] = (2.17, "Kronfluence 1.0.1"),
        [("cnn", "TracInCP self-influence")] = (5.53, "Captum 0.8"),
        [("cnn", "TracInCP pairwise 100 queries")] = (9.96, "Captum 0.8"),
        [("cnn", "TRAK featurize 5,000")] = (8.3, "TRAK 0.3.2"),
        [("cnn", "TRAK pairwise 100 queries")] = (0.33, "TRAK 0.3.2"),
    };

    /// <param name="convOnly">Only the stages of the CNN's per-example conv path (EK-FAC fit, self,
    /// pairwise; TracInCP self, pairwise): `peers-cnn-conv`, about a third of the case's time.</param>
    public static IEnumerable<BenchResult> Run(BenchContext c, string arch, bool convOnly = false)
    {
        string name = "peers-" + arch + (convOnly ? "-conv" : "");
        var (train, test, src) = c.Data(NTrain);
        var queries = test.Subset(Enumerable.Range(0, NQuery).ToArray());
        double gemm = GemmRate();
        yield return new BenchResult(name, "GEMM rate in this process (fp32 2048^3, best of 4)", 0, 2.0 * 2048 * 2048 * 2048 / 1e9 / gemm, 2.0 * 2048 * 2048 * 2048 / 1e9, Measure.PeakRssMiB(), $"{gemm:F1} GFLOP/s");

        // Five checkpoints: one epoch each of SGD on the 5,000 examples (cost does not depend on the weights).
        string dir = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-peers-{arch}-{Environment.ProcessId}");
        var spec = arch == "mlp" ? ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 128 })
            : ModelSpec.For(typeof(PeerCnn).Assembly.Location + ":" + typeof(PeerCnn).FullName, 1, 28, 28, 10);
        new Trainer(new TrainOptions { Epochs = Checkpoints, Seed = 0 }).Train(spec, train, null, dir);
        var ckpts = TracInCheckpoint.FromRun(dir);
        var model = ckpts[^1].Model;
        model.eval();
        var layers = TrackedLayer.Find(model);
        long nParams = layers.Sum(l => l.NumParams);
        var positions = Positions(model, layers, train);
        var f = Flops.PerExample(layers, l => positions[l.Name]);
        double capture = f.Capture;
        // Forming per-example conv gradients Σ_t g_t a_tᵀ (Linear layers stay rank-one).
        double perExample = layers.Where(l => positions[l.Name] > 1).Sum(l => 2.0 * positions[l.Name] * l.Out * l.In);
        // Width of TracIn's exact feature row per checkpoint: flattened conv gradients, [g | a] for Linear.
        double tracinDim = layers.Sum(l => l.IsConv ? (double)l.NumParams : l.Out + l.In);
        string shapes = $"{nParams} params; T = {string.Join(",", layers.Select(l => positions[l.Name]))}";

        BenchResult Row(string stage, double secs, double gflop, string extra = "")
        {
            string note = extra;
            if (PeerSeconds.TryGetValue((arch, stage), out var peer))
                note = $"{peer.Peer} {peer.Seconds:G4} s -> ratio {peer.Seconds / secs:F2}x (peer/ours); {note}";
            double pct = gflop > 0 ? 100 * gflop / secs / gemm : 0;
            if (gflop > 0) note += $"; {pct:F0}% of this process's GEMM rate";
            return new BenchResult(name, stage, NTrain, secs, gflop, Measure.PeakRssMiB(), note.Trim(' ', ';'));
        }

        // EK-FAC (empirical Fisher, heuristic damping).
        var task = new ClassificationTask();
        var prof = new Diagnostics.Profiler();
        FactorFitter fitter = null!;
        Factors? factors = null;
        double tFit = double.MaxValue;
        for (int rep = 0; rep < 2; rep++)    // best of two fits (this machine is shared), stages of the best
        {
            var p = new Diagnostics.Profiler();
            var ft = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = Batch, PartitionSize = NTrain }, p);
            double t = Measure.Seconds(() => factors = ft.Fit(train));
            if (t < tFit) { tFit = t; prof = p; fitter = ft; }
        }
        yield return Row("EK-FAC fit (cov+eigen+lambda)", tFit, NTrain * (2 * capture + f.Covariance + f.Lambda) / 1e9, $"eigen not counted; {shapes}");
        foreach (var (stage, secs, _) in prof.Stages)
            yield return Row("  " + stage, secs, stage switch
            {
                "Fit Covariance" => NTrain * (capture + f.Covariance) / 1e9,
                "Fit Lambda" => NTrain * (capture + f.Lambda) / 1e9,
                _ => 0,
            });
        var ifProfiler = new Diagnostics.Profiler();
        using (var ifn = new DisposableMethod(new InfluenceFunction(model, task, factors!, new ScoreOptions { TrainBatchSize = Batch, QueryBatchSize = Batch }, ifProfiler)))
        {
            var m = (InfluenceFunction)ifn.Method;
            double tSelf = Best2(() => m.SelfInfluence(train));
            yield return Row("EK-FAC self-influence", tSelf, NTrain * (capture + f.Self) / 1e9);
            double sum = 0;
            var before = ifProfiler.Stages.ToDictionary(x => x.Name, x => (x.Total, x.Calls));
            double tPair = Best2(() => m.Pairwise(queries, train, (_, b) => sum += b.sum().item<float>()));
            // Mean seconds per pairwise call of its stages (queries' preconditioning, the scoring pass).
            string pairStages = string.Join(", ", ifProfiler.Stages.Where(x => x.Name is "Precondition Queries" or "Compute Pairwise Score").Select(x =>
            {
                var (t0, c0) = before.TryGetValue(x.Name, out var b0) ? b0 : (0, 0);
                return $"{x.Name} {(x.Total - t0) / Math.Max(1, x.Calls - c0):F3} s";
            }));
            double bound = 2.0 * NQuery * NTrain * nParams;
            // Preconditioning as the library does it per layer (InfluenceFunction.InBasis): Linear layers
            // whose training batches are cheaper to rotate into the eigenbasis than the queries are to
            // rotate back keep the queries there; others form, rotate in and rotate back every query.
            double pre = 0;
            foreach (var l in layers)
            {
                double o = l.Out, i = l.In, t = positions[l.Name];
                bool inBasis = !l.IsConv && t == 1 && NTrain * 2 * (o * o + i * i) < NQuery * 2 * (o * o * i + o * i * i);
                pre += inBasis ? NQuery * (2 * (o * o + i * i) + o * i) + NTrain * 2 * (o * o + i * i)
                    : NQuery * (2 * t * o * i + 4 * (o * o * i + o * i * i));
            }
            yield return Row("EK-FAC pairwise 100 queries", tPair, (bound + (NTrain + NQuery) * capture + pre) / 1e9,
                $"GFLOP = 2*nq*n*params + captures + preconditioning ({pre / 1e9:F1} GFLOP); the bound 2*nq*n*params alone: {100 * bound / 1e9 / tPair / gemm:F0}% of the GEMM rate; mean per call: {pairStages}");
        }

        // TracInCP, exact, every layer, 5 checkpoints, streamed (no store).
        {
            using var t = new TracInCP(ckpts, options: new TracInOptions { TrainBatchSize = Batch, QueryBatchSize = Batch, BlockSize = NTrain });
            double tSelf = Best2(() => t.SelfInfluence(train));
            yield return Row("TracInCP self-influence", tSelf, Checkpoints * NTrain * (capture + perExample) / 1e9);
        }
        {
            using var t = new TracInCP(ckpts, options: new TracInOptions { TrainBatchSize = Batch, QueryBatchSize = Batch, BlockSize = NTrain });
            double sum = 0;
            double tPair = Best2(() => t.Pairwise(queries, train, (_, b) => sum += b.sum().item<float>()));
            yield return Row("TracInCP pairwise 100 queries", tPair,
                Checkpoints * ((NTrain + NQuery) * (capture + perExample) + 2.0 * NQuery * NTrain * tracinDim) / 1e9, "GFLOP = captures + per-example conv grads + 2*nq*n*row width");
        }

        // TRAK, one model, dense Gaussian k = 2048, features kept in memory.
        if (!convOnly)
        {
            var proj = new ProjectionOptions { Layout = ProjectionLayout.Dense, Kind = ProjectionKind.Gaussian, Dim = K };
            using var trak = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = Batch, QueryBatchSize = Batch, BlockSize = NTrain });
            // Per example: capture, per-example gradient (conv: 2·T·Out·In; Linear: Out·In products), projection 2·p·k.
            double featPerEx = capture + perExample + layers.Where(l => positions[l.Name] == 1).Sum(l => (double)l.NumParams) + 2.0 * nParams * K;
            double tFeat = Measure.Seconds(() => trak.BuildStore(train));
            yield return Row("TRAK featurize 5,000", tFeat, NTrain * featPerEx / 1e9, $"projection alone 2*n*p*k = {2.0 * NTrain * nParams * K / 1e9:F0} GFLOP");
            double sum = 0;
            double tPair = Measure.Seconds(() => trak.Pairwise(queries, train, (_, b) => sum += b.sum().item<float>()));
            // The first scoring call also fits the kernel ΦᵀΦ (float64) and its inverse (eigh
            // pseudo-inverse at damping 0); reported apart, as the peers' finalize step.
            double tKFit = trak.Profiler.Stages.Where(s => s.Name is "Fit TRAK Kernel").Sum(s => s.Total);
            double tInv = trak.Profiler.Stages.Where(s => s.Name is "Invert TRAK Kernel").Sum(s => s.Total);
            double tKernel = tKFit + tInv;
            var kd = trak.Diagnostics.Single();
            yield return Row("TRAK kernel fit + inverse (first scoring call)", tKernel, 2.0 * NTrain * K * K / 1e9,
                $"GFLOP = kernel GEMM only (fp64); fit {tKFit:F2} s, inverse {tInv:F2} s by {kd.Solver} (rank {kd.Rank}); featurize + kernel {tFeat + tKernel:F2} s");
            double tPair2 = Measure.Seconds(() => trak.Pairwise(queries, train, (_, b) => sum += b.sum().item<float>()));
            yield return Row("TRAK pairwise 100 queries", Math.Min(tPair - tKernel, tPair2), (NQuery * featPerEx + 2.0 * NQuery * K * K + 2.0 * NQuery * NTrain * K) / 1e9,
                $"query features + scores, kernel excluded (first call with it: {tPair:F2} s; best of two)");
            double tSelfT = Measure.Seconds(() => trak.SelfInfluence(train));
            yield return Row("TRAK self-influence (after pairwise)", tSelfT, 2.0 * NTrain * K * K / 1e9);
        }
        // The same with the structured projection (third layout, no peer equivalent on the CPU): SRHT, k = 2048.
        if (!convOnly && Enum.TryParse<ProjectionLayout>("Hadamard", out var hadamard))
        {
            var proj = new ProjectionOptions { Layout = hadamard, Kind = ProjectionKind.Rademacher, Dim = K };
            using var trak = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = Batch, QueryBatchSize = Batch, BlockSize = NTrain });
            double tFeat = Measure.Seconds(() => trak.BuildStore(train));
            yield return Row("TRAK featurize 5,000, Hadamard (SRHT) k=2048", tFeat, 0, "peer: TRAK's dense 29.0 / 8.3 s (MLP / CNN) for comparison; no FLOP count");
        }
        try { Directory.Delete(dir, true); } catch (IOException) { }
    }

    /// <summary>A short check of the dense TRAK projection alone (under a minute of CPU, for a loaded
    /// machine): 1,000 examples of each model (fresh weights; cost does not depend on them), dense
    /// Gaussian k = 2048, batch 500, after one warm-up batch (P generated or cached); plus the
    /// Hadamard layout at the same k.</summary>
    public static IEnumerable<BenchResult> TrakQuick(BenchContext c)
    {
        const int n = 1000;
        var (train, _, src) = c.Data(n + Batch);
        double gemm = GemmRate();
        yield return new BenchResult("peers-trak-quick", "GEMM rate in this process", 0, 2.0 * 2048 * 2048 * 2048 / 1e9 / gemm, 2.0 * 2048 * 2048 * 2048 / 1e9, Measure.PeakRssMiB(), $"{gemm:F1} GFLOP/s");
        foreach (var arch in new[] { "mlp", "cnn" })
        {
            torch.manual_seed(0);
            Module<Tensor, Tensor> model = arch == "mlp" ? new Mlp(784, new[] { 128 }, 10) : new PeerCnn(10);
            model.eval();
            long nParams = TrackedLayer.Find(model).Sum(l => l.NumParams);
            foreach (var layout in Enum.GetValues<ProjectionLayout>().Where(l => l != ProjectionLayout.Kronecker))
            {
                var proj = new ProjectionOptions { Layout = layout, Kind = layout == ProjectionLayout.Dense ? ProjectionKind.Gaussian : ProjectionKind.Rademacher, Dim = K };
                double tSetup = 0, t = 0;
                tSetup = Measure.Seconds(() =>
                {
                    using var warm = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = Batch });
                });
                using var trak = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = Batch });
                foreach (var v in trak.TrainFeatures(SubsetDataset.Range(train, n, Batch)).Values) v.Dispose();   // warm-up batch
                t = Measure.Seconds(() => { foreach (var v in trak.TrainFeatures(SubsetDataset.Range(train, 0, n)).Values) v.Dispose(); });
                double gflop = layout == ProjectionLayout.Dense ? 2.0 * n * nParams * K / 1e9 : 0;
                string pct = gflop > 0 ? $"; projection GEMM {100 * gflop / t / gemm:F0}% of this process's GEMM rate" : "";
                yield return new BenchResult("peers-trak-quick", $"{arch} featurize {n}, {layout} k={K}", n, t, gflop, Measure.PeakRssMiB(),
                    $"projector setup {tSetup:F2} s (P generated{(layout == ProjectionLayout.Dense ? " when cached" : ": none")}); {nParams} params{pct}; {src}");
            }
        }
    }

    /// <summary>Output positions T per tracked layer, from one forward pass.</summary>
    static Dictionary<string, double> Positions(Module<Tensor, Tensor> model, List<TrackedLayer> layers, ImageDataset data)
    {
        var result = new Dictionary<string, double>();
        var removers = new List<Action>();
        foreach (var l in layers)
        {
            var h = l.Module.register_forward_hook((m, input, output) =>
            {
                result[l.Name] = output.dim() == 4 ? output.shape[2] * output.shape[3] : 1;
                return output;
            });
            removers.Add(h.remove);
        }
        using (torch.no_grad()) model.call(data.Inputs(new[] { 0, 1 }, CPU)).Dispose();
        foreach (var r in removers) r();
        return result;
    }

    /// <summary>Seconds of the faster of two runs (one when the first takes over 20 s): the machine is shared.</summary>
    static double Best2(Action a)
    {
        double t = Measure.Seconds(a);
        return t < 20 ? Math.Min(t, Measure.Seconds(a)) : t;
    }

    /// <summary>fp32 GEMM rate in this process, GFLOP/s: best of 4 products 2048³.</summary>
    internal static double GemmRate()
    {
        const int n = 2048;
        using var a = torch.randn(n, n);
        using var b = torch.randn(n, n);
        for (int i = 0; i < 2; i++) a.mm(b).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 4; i++) best = Math.Min(best, Measure.Seconds(() => a.mm(b).Dispose()));
        return 2.0 * n * n * n / 1e9 / best;
    }

    sealed class DisposableMethod : IDisposable
    {
        public DisposableMethod(IAttributionMethod m) { Method = m; }
        public IAttributionMethod Method { get; }
        public void Dispose() => (Method as IDisposable)?.Dispose();
    }
}
