using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>The approximate top-k index (FeatureIndex) against the exact GEMM scan: recall@10,
/// fraction of rows scored, search speed-up, build time and memory. `index-synthetic`: 100,000 and
/// 500,000 structured synthetic rows of d = 512; `index-real`: TRAK features (Kronecker layout,
/// 2,048 dims) of the 60,000 Fashion-MNIST training images under an MLP.</summary>
public static class IndexCases
{
    const int K = 10;

    /// <summary>Rows with the structure of real features (not isotropic): 100 cluster centres, a
    /// rank-64 component with a decaying spectrum, isotropic noise, and log-normal row norms (a few
    /// rows of large norm, as in gradient features). Float32 [n, d], seeded.</summary>
    static Tensor Synthetic(long n, int d, Tensor centres, Tensor basis, Tensor spectrum)
    {
        var x = empty(n, d);
        const long chunk = 50_000;
        for (long s = 0; s < n; s += chunk)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(chunk, n - s);
            var lab = randint(0, centres.shape[0], new[] { len });
            var rows = centres.index_select(0, lab) + (randn(len, basis.shape[0]) * spectrum).matmul(basis) + randn(len, d) * (0.5 / Math.Sqrt(d));
            x.narrow(0, s, len).copy_(rows * exp(randn(len, 1) * 0.5));
        }
        return x;
    }

    /// <summary>Norm spread (coefficient of variation of row norms) and the share of variance in the
    /// top 64 principal directions, on up to 20,000 rows: the statistics the synthetic rows imitate.</summary>
    static string Stats(Tensor x)
    {
        using var scope = NewDisposeScope();
        var s = x.narrow(0, 0, Math.Min(20_000, x.shape[0])).to(ScalarType.Float64);
        var norms = s.norm(1);
        double cv = (norms.std() / norms.mean()).item<double>();
        var c = s - s.mean(new long[] { 0 }, true);
        var ev = linalg.eigvalsh(c.mT.matmul(c)).flip(0);
        double top = (ev.narrow(0, 0, Math.Min(64, ev.shape[0])).sum() / ev.sum()).item<double>();
        double meanAbsCos;
        {
            var u = s.narrow(0, 0, Math.Min(2000, s.shape[0]));
            u = u / u.norm(1, true).clamp_min(1e-30);
            meanAbsCos = u.matmul(u.mT).abs().mean().item<double>();
        }
        return $"row-norm CV {cv:F2}, top-64 PCs hold {top:P0} of the variance, mean |cos| between rows {meanAbsCos:F2}";
    }

    /// <summary>Exact top-k of each query (largest, or smallest) by a GEMM scan over blocks of rows.</summary>
    static int[][] ExactTopK(Tensor rows, Tensor queries, int k, bool largest)
    {
        using var scope = NewDisposeScope();
        long n = rows.shape[0];
        var q = largest ? queries : queries.neg();
        Tensor? bestS = null, bestI = null;
        const long block = 65_536;
        for (long s = 0; s < n; s += block)
        {
            long len = Math.Min(block, n - s);
            var sc = q.matmul(rows.narrow(0, s, len).mT);
            var (v, i) = sc.topk((int)Math.Min(k, len), 1);
            i = i + s;
            if (bestS is null) { bestS = v; bestI = i; }
            else
            {
                var cs = cat(new[] { bestS, v }, 1); var ci = cat(new[] { bestI!, i }, 1);
                var (v2, j) = cs.topk(k, 1);
                bestS = v2; bestI = ci.gather(1, j);
            }
        }
        var ids = bestI!.data<long>().ToArray();
        return Enumerable.Range(0, (int)queries.shape[0]).Select(r => ids.Skip(r * k).Take(k).Select(x => (int)x).ToArray()).ToArray();
    }

    static double Recall(int[][] found, int[][] exact) =>
        found.Zip(exact).Average(p => (double)p.First.Intersect(p.Second).Count() / p.Second.Length);

    static double Best(int reps, Action a) => Enumerable.Range(0, reps).Select(_ => Measure.Seconds(a)).Min();

    /// <summary>Builds the index with both probing rules, then sweeps probe counts: recall@10 against
    /// the exact scan, rows scored, and search time against the exact scan's (all queries, and one).</summary>
    static IEnumerable<BenchResult> Evaluate(string name, Tensor rows, Tensor queries, string stats, bool opponents, double[]? fractions = null, IndexProbing[]? rules = null)
    {
        long n = rows.shape[0]; int d = (int)rows.shape[1]; int nq = (int)queries.shape[0];
        var exact = ExactTopK(rows, queries, K, true);
        var exactLow = opponents ? ExactTopK(rows, queries, K, false) : null;
        var q1 = queries.narrow(0, 0, 1);
        double tExact = Best(2, () => ExactTopK(rows, queries, K, true));
        double tExact1 = Best(3, () => ExactTopK(rows, q1, K, true));
        double gflopExact = 2.0 * nq * n * d / 1e9;
        yield return new BenchResult(name, $"exact GEMM scan, {nq} queries, top-{K}", n, tExact, gflopExact, Measure.PeakRssMiB(),
            $"1 query: {tExact1 * 1000:F0} ms; {stats}");
        foreach (var probing in rules ?? new[] { IndexProbing.Reduction, IndexProbing.InnerProduct })
        {
            string dir = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-index-{Environment.ProcessId}-{probing}");
            const int blockRows = 16_384;
            var source = new IndexSource((int)n, d, (int)((n + blockRows - 1) / blockRows),
                b => (b * blockRows, rows.narrow(0, (long)b * blockRows, Math.Min(blockRows, n - (long)b * blockRows)).clone()), "bench", name);
            var options = new IndexOptions { Seed = 0, Probing = probing };
            int lists = options.ListsFor((int)n);
            double rssBefore = Measure.RssMiB();
            var sw = Stopwatch.StartNew();
            var prof = new Diagnostics.Profiler();
            using var index = FeatureIndex.Build(dir, source, options, prof);
            double tBuild = sw.Elapsed.TotalSeconds;
            double peakAbove = Measure.PeakRssMiB() - rssBefore;
            long sample = Math.Min(n, (long)lists * options.SamplePerList);
            // k-means: iterations × 2·sample·lists·(d+1) plus the assignment of every row, 2·n·lists·(d+1).
            double gflopBuild = (options.Iterations * 2.0 * sample * lists * (d + 1) + 2.0 * n * lists * (d + 1)) / 1e9;
            long bytes = new DirectoryInfo(dir).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
            string stages = string.Join(", ", prof.Stages.Select(s => $"{s.Name.Replace("Index: ", "")} {s.Total:F1} s"));
            yield return new BenchResult(name, $"build {probing}: {lists} lists, k-means on {sample} rows x {options.Iterations} it", n, tBuild, gflopBuild,
                Measure.PeakRssMiB(), $"peak RSS +{Math.Max(0, peakAbove):F0} MiB over the rows held; files {bytes / 1048576.0:F0} MiB; {stages}");
            var sizes = Enumerable.Range(0, lists).Select(index.ListSize).OrderBy(x => x).ToArray();
            foreach (var frac in fractions ?? new[] { 0.005, 0.01, 0.02, 0.05, 0.1 })
            {
                int probe = Math.Max(1, (int)Math.Round(frac * lists));
                index.Search(q1, K, probe);   // warm the lists' pages
                IndexHits hits = null!;
                double t = Best(2, () => hits = index.Search(queries, K, probe));
                double t1 = Best(3, () => index.Search(q1, K, probe));
                double recall = Recall(hits.Indices, exact);
                double scoredFrac = hits.CandidatesScored / (double)(nq * n);
                string low = "";
                if (exactLow is not null)
                    low = $", opponents recall@10 {Recall(index.Search(queries, K, probe, largest: false).Indices, exactLow):F3}";
                yield return new BenchResult(name, $"search {probing} probe {probe}/{lists}", n, t, 2.0 * hits.CandidatesScored * d / 1e9, Measure.PeakRssMiB(),
                    $"recall@10 {recall:F3}{low}; scored {scoredFrac:P2} of rows ({1 / scoredFrac:F0}x fewer); speed-up {tExact / t:F1}x ({nq} queries), {tExact1 / t1:F1}x (1 query: {t1 * 1000:F1} ms)");
            }
            Console.Error.WriteLine($"{name} {probing}: list sizes min {sizes[0]}, median {sizes[lists / 2]}, max {sizes[^1]}");
            index.Dispose();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    public static IEnumerable<BenchResult> Synthetic(BenchContext c)
    {
        const int d = 512;
        manual_seed(13);
        var centres = randn(100, d) / Math.Sqrt(d);
        var basis = randn(64, d) / Math.Sqrt(d);
        var spectrum = arange(1, 65, dtype: ScalarType.Float32).pow(-0.5);
        // --n below 60,000 (the default) is a quick try at that size.
        foreach (var n in c.N >= 60_000 ? new[] { 100_000, 500_000 } : new[] { c.N })
        {
            var rows = Synthetic(n, d, centres, basis, spectrum);
            var queries = Synthetic(100, d, centres, basis, spectrum);
            foreach (var r in Evaluate($"index-synthetic-{n / 1000}k", rows, queries, $"synthetic d={d}: " + Stats(rows), opponents: false,
                // at 500,000 rows only the Reduction rule (the lock's time); both are compared at 100,000
                rules: n > 200_000 ? new[] { IndexProbing.Reduction } : null)) yield return r;
            rows.Dispose();
            GC.Collect();
        }
    }

    static (Tensor Rows, Tensor Queries) Whiten(Tensor rows, Tensor queries, double alpha)
    {
        using var scope = NewDisposeScope();
        var r64 = rows.to(ScalarType.Float64);
        var m = r64.mT.matmul(r64);
        var (e, v) = linalg.eigh((m + m.mT) / 2);
        var keep = e.gt(e.max() * 1e-10);
        var ep = where(keep, e, ones_like(e));
        var s = where(keep, ep.pow(-alpha), zeros_like(e));
        var t = where(keep, ep.pow(alpha), zeros_like(e));
        var sm = (v * s.unsqueeze(0)).matmul(v.mT);
        var tm = (v * t.unsqueeze(0)).matmul(v.mT);
        var rw = r64.matmul(sm).to(ScalarType.Float32).contiguous();
        var qw = queries.to(ScalarType.Float64).matmul(tm).to(ScalarType.Float32).contiguous();
        return (rw.MoveToOuterDisposeScope(), qw.MoveToOuterDisposeScope());
    }

    static readonly double[] RealFractions = { 0.01, 0.02, 0.05, 0.1, 0.2 };

    public static IEnumerable<BenchResult> Real(BenchContext c) => Real(c, tracInLast: true);

    public static IEnumerable<BenchResult> Real(BenchContext c, bool tracInLast)
    {
        var (train, test, src) = c.Data(Math.Min(c.N, 60000));
        string runDir = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-index-run-{Environment.ProcessId}");
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 128 });
        double tTrain = Measure.Seconds(() => new Trainer(new TrainOptions { Epochs = 2, Seed = 0 }).Train(spec, train, null, runDir));
        var ckpts = Methods.TracIn.TracInCheckpoint.FromRun(runDir);
        yield return new BenchResult("index-real", "train MLP 784-128-10, 2 epochs", train.Count, tTrain, 0, Measure.PeakRssMiB(), src);
        var queryData = test.Subset(Enumerable.Range(0, 1000).ToArray());

        // TracIn-last over both checkpoints: rows η_c vec(g_c a_cᵀ), 2 × 10 × 129 = 2,580 dims.
        if (tracInLast)
        {
            string store = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-index-store-tl-{Environment.ProcessId}");
            using var tl = new Methods.TracIn.TracInCPFast(ckpts, null, new Methods.TracIn.TracInFastOptions { StoreDirectory = store, TrainBatchSize = 512 });
            double tFeat = Measure.Seconds(() => tl.BuildStore(train));
            yield return new BenchResult("index-real", "tracin-last features (2 checkpoints) into the store", train.Count, tFeat, 0, Measure.PeakRssMiB(), "");
            var source = tl.IndexSourceFor(train);
            var rows = cat(Enumerable.Range(0, source.BlockCount).Select(b => source.Block(b).Rows).ToArray(), 0);
            var queries = tl.IndexQueries(queryData, train);
            foreach (var r in Evaluate("index-real-tracin-last", rows, queries, $"tracin-last rows of {src}, d={rows.shape[1]}: " + Stats(rows), opponents: true, RealFractions)) yield return r;
            rows.Dispose();
            try { Directory.Delete(store, true); } catch (IOException) { }
        }
        // TRAK (Kronecker layout, 2,048 dims) of the first 20,000 images (featurisation is the slow part here).
        {
            int nTrak = Math.Min(train.Count, 20_000);
            var trakTrain = SubsetDataset.Range(train, 0, nTrak);
            string store = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-index-store-trak-{Environment.ProcessId}");
            using var trak = new Trak(new[] { ckpts[^1].Model }, new TrakOptions { StoreDirectory = store, TrainBatchSize = 512 });
            double tFeat = Measure.Seconds(() => trak.BuildStore(trakTrain));
            yield return new BenchResult("index-real", $"TRAK features (Kronecker, {trak.ProjectedDim} dims) into the store", nTrak, tFeat, 0, Measure.PeakRssMiB(), "");
            var source = trak.IndexSourceFor(trakTrain);
            var rows = cat(Enumerable.Range(0, source.BlockCount).Select(b => source.Block(b).Rows).ToArray(), 0);
            var queries = trak.IndexQueries(queryData, trakTrain);
            foreach (var r in Evaluate($"index-real-trak-{nTrak / 1000}k", rows, queries, $"TRAK rows φ·q̄ of {src}, d={rows.shape[1]}: " + Stats(rows), opponents: true, RealFractions)) yield return r;
            // The same scores in a (partly) whitened space: rows S r, queries T u with S = M^(-α), T = M^α,
            // M = Σ r rᵀ the rows' second moment (Tᵀ S = I on the rows' span, so the inner products are unchanged).
            // α = ½ whitens the rows (measured: worse, the whitened rows are nearly isotropic); α = ¼ half-way.
            foreach (var alpha in new[] { 0.5, 0.25 })
            {
                var (rowsW, queriesW) = Whiten(rows, queries, alpha);
                foreach (var r in Evaluate($"index-real-trak-{nTrak / 1000}k-whitened-{alpha}", rowsW, queriesW, $"TRAK rows times M^-{alpha}: " + Stats(rowsW), opponents: true, RealFractions,
                    new[] { IndexProbing.InnerProduct })) yield return r;
                rowsW.Dispose(); queriesW.Dispose();
            }
            try { Directory.Delete(store, true); } catch (IOException) { }
        }
        try { Directory.Delete(runDir, true); } catch (IOException) { }
    }
}
