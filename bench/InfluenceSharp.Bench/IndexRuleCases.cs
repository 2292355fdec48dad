using InfluenceSharp.Data;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>Which list-ranking rule lets an IVF find TRAK's top-10 (experiment for the index's
/// goal on TRAK features). The TRAK rows φ·q̄ and queries of `index-real-trak` (first 20,000 images,
/// 1,000 test queries) are computed once and cached (INDEX_RULES_CACHE, default /tmp); k-means is
/// run here with torch (the same Lloyd iterations as FeatureIndex), and each rule is evaluated
/// without searching: a query's recall at probe p is the share of its exact top-10 rows whose lists
/// are among its p best-ranked lists; rows scored = the sizes of those lists.</summary>
public static class IndexRuleCases
{
    public static IEnumerable<BenchResult> Run(BenchContext c)
    {
        string cache = Path.Combine(Environment.GetEnvironmentVariable("INDEX_RULES_CACHE") ?? Path.GetTempPath(), "influencesharp-trak-rows-20k.safetensors");
        Tensor rows, queries;
        if (File.Exists(cache))
        {
            using var f = SafeTensors.Load(cache);
            rows = f.Tensors["rows"].clone(); queries = f.Tensors["queries"].clone();
        }
        else
        {
            var (train, test, _) = c.Data(20000);
            string runDir = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-rules-run-{Environment.ProcessId}");
            var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 128 });
            new Trainer(new TrainOptions { Epochs = 2, Seed = 0 }).Train(spec, train, null, runDir);
            var ckpts = Methods.TracIn.TracInCheckpoint.FromRun(runDir);
            string store = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-rules-store-{Environment.ProcessId}");
            using var trak = new Trak(new[] { ckpts[^1].Model }, new TrakOptions { StoreDirectory = store, TrainBatchSize = 512 });
            trak.BuildStore(train);
            var source = trak.IndexSourceFor(train);
            rows = cat(Enumerable.Range(0, source.BlockCount).Select(b => source.Block(b).Rows).ToArray(), 0);
            queries = trak.IndexQueries(test.Subset(Enumerable.Range(0, 1000).ToArray()), train);
            SafeTensors.Save(cache, new Dictionary<string, Tensor> { ["rows"] = rows, ["queries"] = queries });
            try { Directory.Delete(store, true); Directory.Delete(runDir, true); } catch (IOException) { }
        }
        long n = rows.shape[0];
        int nq = (int)queries.shape[0];
        var exact = queries.matmul(rows.mT).topk(10, 1).indexes;                 // [nq, 10]
        var norms = rows.norm(1);
        foreach (var (clusterName, lists, x) in new (string, int, Func<Tensor>)[]
        {
            ("k-means on rows", 566, () => rows),
            ("k-means on rows, 4x lists", 2264, () => rows),
            ("k-means on unit rows", 566, () => rows / norms.unsqueeze(1).clamp_min(1e-30)),
        })
        {
            var gen = new torch.Generator(0);
            using var one = 1.0.ToScalar();
            var data = x();
            var cent = KMeans(data, lists, 10, gen);
            var assign = Nearest(data, cent);                                        // [n]
            var sizes = bincount(assign, minlength: lists).to(ScalarType.Float64);
            // list statistics in the rows' own space
            var sums = zeros(lists, rows.shape[1]).index_add_(0, assign, rows, one);
            var means = sums / sizes.to(ScalarType.Float32).clamp_min(1).unsqueeze(1);
            var dist = (rows - means.index_select(0, assign)).norm(1);
            var (radius, maxNorm) = (ListMax(assign, dist, lists), ListMax(assign, norms, lists));
            var qn = queries.norm(1, true);
            var listOfExact = assign.index_select(0, exact.reshape(-1)).reshape(nq, 10);
            var baseScore = queries.matmul(means.mT);                                // ⟨q, mean of list⟩
            var rules = new List<(string, Tensor)>
            {
                ("<q, mean>", baseScore),
                ("<q, mean> + 0.25 |q| r", baseScore + qn * radius.unsqueeze(0) * 0.25),
                ("<q, mean> + 0.5 |q| r", baseScore + qn * radius.unsqueeze(0) * 0.5),
                ("<q, mean> + |q| r", baseScore + qn * radius.unsqueeze(0)),
                ("<q, unit mean> * max norm", queries.matmul((means / means.norm(1, true).clamp_min(1e-30)).mT) * maxNorm.unsqueeze(0)),
            };
            foreach (var (ruleName, score) in rules)
            {
                var order = score.argsort(1, descending: true);                     // [nq, lists]
                var rankOf = empty_like(order).scatter_(1, order, arange(lists, dtype: ScalarType.Int64).unsqueeze(0).expand(nq, lists).contiguous());
                var exactRanks = rankOf.gather(1, listOfExact);                       // [nq, 10]
                var cumSizes = sizes.index_select(0, order.reshape(-1)).reshape(nq, lists).cumsum(1);
                foreach (var frac in new[] { 0.01, 0.02, 0.05, 0.1, 0.2 })
                {
                    int probe = Math.Max(1, (int)Math.Round(frac * lists));
                    double recall = exactRanks.lt(probe).to(ScalarType.Float64).mean().item<double>();
                    double scored = cumSizes.select(1, probe - 1).mean().item<double>() / n;
                    yield return new BenchResult("index-rules", $"{clusterName} ({lists} lists): {ruleName}, probe {probe}", n, 0, 0, Measure.PeakRssMiB(),
                        $"recall@10 {recall:F3}; scored {scored:P2} of rows ({1 / scored:F0}x fewer)");
                }
            }
        }
    }

    static Tensor ListMax(Tensor assign, Tensor values, int lists)
    {
        var a = assign.data<long>().ToArray(); var v = values.contiguous().data<float>().ToArray();
        var m = new float[lists];
        for (int i = 0; i < a.Length; i++) m[a[i]] = Math.Max(m[a[i]], v[i]);
        return tensor(m);
    }

    static Tensor Nearest(Tensor x, Tensor c)
    {
        var halfSq = c.square().sum(1).mul(0.5);
        var result = empty(x.shape[0], dtype: ScalarType.Int64);
        for (long s = 0; s < x.shape[0]; s += 8192)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(8192, x.shape[0] - s);
            result.narrow(0, s, len).copy_(x.narrow(0, s, len).matmul(c.mT).sub_(halfSq).argmax(1));
        }
        return result;
    }

    static Tensor KMeans(Tensor x, int k, int iterations, torch.Generator gen)
    {
        var c = x.index_select(0, randperm(x.shape[0], generator: gen).narrow(0, 0, k)).clone();
        for (int it = 0; it < iterations; it++)
        {
            using var scope = NewDisposeScope();
            var a = Nearest(x, c);
            using var one = 1.0.ToScalar();
            var sums = zeros(k, x.shape[1]).index_add_(0, a, x, one);
            var counts = bincount(a, minlength: k).to_type(ScalarType.Float32);
            var next = sums / counts.clamp_min(1).unsqueeze(1);
            next = where(counts.eq(0).unsqueeze(1), c, next);
            c.copy_(next);
        }
        return c;
    }
}
