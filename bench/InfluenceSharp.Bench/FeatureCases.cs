using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>TracIn (last layer, 5 checkpoints), TRAK featurisation, store scoring and top-k latency.</summary>
public static class FeatureCases
{
    /// <summary>Five SmallCnn checkpoints from a short training run on 10k examples (weights only
    /// matter for realism, not for cost).</summary>
    static List<TracInCheckpoint> Checkpoints(BenchContext c, string arch, int count)
    {
        var (train, _, _) = c.Data(10000);
        string dir = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-{arch}-{Environment.ProcessId}");
        var spec = ModelSpec.For(arch, 1, 28, 28, 10);
        new Trainer(new TrainOptions { Epochs = count, Seed = 0 }).Train(spec, train, null, dir);
        return TracInCheckpoint.FromRun(dir);
    }

    public static IEnumerable<BenchResult> TracInLast(BenchContext c)
    {
        var ckpts = Checkpoints(c, "smallcnn", 5);
        var (train, test, src) = c.Data(c.N);
        var queries = test.Subset(Enumerable.Range(0, 1000).ToArray());
        string store = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-store-{Environment.ProcessId}");
        var prof = new Diagnostics.Profiler();
        var m = new TracInCPFast(ckpts, options: new TracInFastOptions { StoreDirectory = store, TrainBatchSize = 512 }, profiler: prof);
        double tBuild = Measure.Seconds(() => m.BuildStore(train));
        yield return new BenchResult("tracin-last", "featurise train (5 ckpts, store on disk)", train.Count, tBuild, 0, Measure.PeakRssMiB(), src);
        double tSelf = Measure.Seconds(() => m.SelfInfluence(train));
        yield return new BenchResult("tracin-last", "self-influence from store", train.Count, tSelf, 0, Measure.PeakRssMiB(), "");
        double sum = 0;
        var prof2 = new Diagnostics.Profiler();
        var m2 = new TracInCPFast(ckpts, options: new TracInFastOptions { StoreDirectory = store, TrainBatchSize = 512 }, profiler: prof2);
        double tPair = Measure.Seconds(() => m2.Pairwise(queries, train, (_, b) => sum += b.sum().item<float>()));
        // Per checkpoint: (g_q·g_z) and (a_q·a_z) GEMMs over dims 10 and 129, then a Hadamard product and sum.
        double dims = 10 + 129;
        double gflop = 2.0 * queries.Count * (double)train.Count * 5 * (dims + 1) / 1e9;
        var score = prof2.Stages.FirstOrDefault(s => s.Name == "Compute Pairwise Score");
        yield return new BenchResult("tracin-last", "pairwise 1000 queries (query features + scoring)", train.Count, tPair, gflop, Measure.PeakRssMiB(), "GFLOP = 2*nq*n*C*(10+129+1)");
        yield return new BenchResult("tracin-last", "  scoring the stored features", train.Count, score.Total, gflop, Measure.PeakRssMiB(), "GEMM over the store blocks");
        // Top-k latency: one query against the 60k store.
        var one = test.Subset(new[] { 0 });
        for (int warm = 0; warm < 1; warm++) TopK(m2, one, train);
        var lat = Enumerable.Range(0, 5).Select(_ => Measure.Seconds(() => TopK(m2, one, train))).Min();
        yield return new BenchResult("tracin-last", "top-10 latency, 1 query vs store", train.Count, lat, 0, Measure.PeakRssMiB(), $"{lat * 1000:F0} ms (best of 5)");
        try { Directory.Delete(store, true); } catch (IOException) { }
    }

    static void TopK(IAttributionMethod m, IDataset q, IDataset train)
    {
        var topk = new StreamingTopK(q.Count, 10);
        m.Pairwise(q, train, (off, b) => topk.Add(b, off));
        topk.Result();
    }

    public static IEnumerable<BenchResult> TrakFeatures(BenchContext c)
    {
        var (train, _, src) = c.Data(4096);
        foreach (var arch in new[] { "mlp", "smallcnn" })
        {
            var model = Checkpoints(c, arch, 1)[0].Model;
            foreach (var k in new[] { 2048, 8192 })
            foreach (var layout in new[] { ProjectionLayout.Dense, ProjectionLayout.Kronecker })
            {
                int n = layout == ProjectionLayout.Kronecker ? 4096 : arch == "mlp" ? (k == 2048 ? 2048 : 1024) : (k == 2048 ? 512 : 256);
                var data = SubsetDataset.Range(train, 0, n);
                var proj = layout == ProjectionLayout.Dense ? new ProjectionOptions { Layout = layout, Dim = k }
                    : new ProjectionOptions { Layout = layout, GradientDim = k == 2048 ? 16 : 32, ActivationDim = k == 2048 ? 128 : 256 };
                using var trak = new Trak(new[] { model }, new TrakOptions { Projection = proj, TrainBatchSize = 128 });
                long p = trak.ProjectedDim;
                trak.TrainFeatures(SubsetDataset.Range(train, 0, 128));            // warm-up (and dense P generation)
                double t = Measure.Seconds(() => { foreach (var v in trak.TrainFeatures(data).Values) v.Dispose(); });
                long nParams = Gradients.TrackedLayer.Find(model).Sum(l => l.NumParams);
                double gflop = layout == ProjectionLayout.Dense ? 2.0 * n * nParams * k / 1e9 : 0;
                yield return new BenchResult($"trak-{arch}", $"featurise k={k} {layout}", n, t, gflop, Measure.PeakRssMiB(),
                    layout == ProjectionLayout.Dense ? $"GFLOP = 2*n*{nParams}*k (projection only)" : $"Kronecker, {p} dims");
            }
        }
    }
}
