using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>
/// Attribution against the model's own passes, ResNet-18 at 224×224 (10 classes, fine-tuned part =
/// layer4 + fc; the rest frozen, as a fine-tune keeps it): per stage, seconds per example and the
/// ratio to the forward(+backward) time that stage cannot avoid, both measured in this process on
/// the same model, batch and data. Stages: EK-FAC fit of the last layer (ekfac-last; covariance and
/// eigenvalue passes, and the whole fit), TRAK featurisation (layer4 + fc,
/// Kronecker projection), TracIn-last self-influence (fc, one checkpoint: a forward pass is all it
/// needs) and an exact top-k explanation with TRAK from the store (query features + scoring).
/// `--n N` sets the training examples (default 32).
/// </summary>
public static class StreamCases
{
    const int Side = 224, Batch = 16, Queries = 4;

    public static IEnumerable<BenchResult> ResNet18Stages(BenchContext c)
    {
        int n = c.N >= 60000 ? 32 : c.N;
        torch.manual_seed(0);
        var model = ModelSpec.For("resnet18", 3, Side, Side, 10).Create();
        foreach (var (name, p) in model.named_parameters())
            p.requires_grad = name.StartsWith("layer4", StringComparison.Ordinal) || name.StartsWith("fc", StringComparison.Ordinal);
        model.eval();
        var rng = new Random(1);
        var px = new byte[(long)(n + Queries) * 3 * Side * Side];
        rng.NextBytes(px);
        var all = new ImageDataset("random", px, Enumerable.Range(0, n + Queries).Select(_ => rng.Next(10)).ToArray(), 3, Side, Side, 10);
        var train = all.Subset(Enumerable.Range(0, n).ToArray());
        var queries = all.Subset(Enumerable.Range(n, Queries).ToArray());
        string tmp = Path.Combine(Path.GetTempPath(), $"influencesharp-bench-r18-{Environment.ProcessId}");

        // The yardsticks: forward and forward + backward (to layer4's parameters) per example.
        var idx = Enumerable.Range(0, Batch).Select(i => i % n).ToArray();
        using var x = train.Inputs(idx);
        using var y = train.Targets(idx);
        double Fwd()
        {
            using var _ = torch.no_grad();
            return Measure.Seconds(() => model.call(x).Dispose());
        }
        double FwdBwd()
        {
            model.zero_grad();
            return Measure.Seconds(() =>
            {
                using var scope = NewDisposeScope();
                nn.functional.cross_entropy(model.call(x), y, reduction: nn.Reduction.Sum).backward();
            });
        }
        Fwd(); FwdBwd();
        double fwd = Enumerable.Range(0, 2).Select(_ => Fwd()).Min() / Batch;
        double fb = Enumerable.Range(0, 2).Select(_ => FwdBwd()).Min() / Batch;
        model.zero_grad();
        yield return new BenchResult("resnet18-224", "forward, per example", Batch, fwd * Batch, 0, Measure.PeakRssMiB(), $"batch {Batch}, best of 2: {fwd:F3} s/example");
        yield return new BenchResult("resnet18-224", "forward+backward (layer4+fc), per example", Batch, fb * Batch, 0, Measure.PeakRssMiB(), $"batch {Batch}, best of 2: {fb:F3} s/example");

        BenchResult Row(string stage, int examples, double secs, double yard, string what) =>
            new("resnet18-224", stage, examples, secs, 0, Measure.PeakRssMiB(),
                $"{secs / examples:F3} s/example; {what} {yard:F3} s/example; ratio {secs / examples / yard:F2} (overhead {100 * (secs / examples / yard - 1):F0}%)");

        // EK-FAC fit of the last layer (ekfac-last, the detection method), empirical Fisher: the
        // covariance pass needs a forward pass and fc's gradient (formed from the logits, no backward
        // through the network); the eigenvalue pass reuses its layer batches.
        {
            var prof = new Diagnostics.Profiler();
            var fitter = new FactorFitter(model, new ClassificationTask(), new FactorOptions
            { Strategy = FactorStrategy.Ekfac, Fisher = FisherType.Empirical, TrainBatchSize = Batch, PartitionSize = n, Layers = "fc" }, prof);
            double t = Measure.Seconds(() => fitter.Fit(train)?.Dispose());
            double cov = prof.Stages.Where(s => s.Name == "Fit Covariance").Sum(s => s.Total);
            double lam = prof.Stages.Where(s => s.Name == "Fit Lambda").Sum(s => s.Total);
            yield return Row("EK-FAC fit, last layer (covariance + eigenvalue passes)", n, cov + lam, fwd, "forward");
            yield return Row("EK-FAC fit, last layer, whole (with eigendecompositions)", n, t, fwd, "forward");
            yield return new BenchResult("resnet18-224", "  EK-FAC fit stages", 0, t, 0, Measure.PeakRssMiB(),
                string.Join(", ", prof.Stages.Select(s => $"{s.Name} {s.Total:F2} s")));
        }

        // TRAK featurisation into a store: one forward + per-example gradients (one backward).
        using (var trak = new Trak(new[] { model }, new TrakOptions { Layers = "layer4,fc", TrainBatchSize = Batch, QueryBatchSize = Batch, StoreDirectory = Path.Combine(tmp, "trak"),
                   Projection = new ProjectionOptions { Layout = ProjectionLayout.Kronecker } }))
        {
            double t = Measure.Seconds(() => trak.BuildStore(train));
            yield return Row("TRAK featurize (layer4+fc, Kronecker)", n, t, fb, "forward+backward");
            // Exact top-k: the first call also fits and inverts the kernel (a fixed cost, cached in the store).
            var warm = new StreamingTopK(1, 8);
            double tFirst = Measure.Seconds(() => trak.Pairwise(queries.Subset(new[] { 0 }), train, (off, b) => warm.Add(b, off)));
            var topk = new StreamingTopK(Queries, 8);
            double tq = Measure.Seconds(() => trak.Pairwise(queries, train, (off, b) => topk.Add(b, off)));
            yield return Row($"explain: exact top-8 over {n} stored, per query", Queries, tq, fb, "query forward+backward");
            yield return new BenchResult("resnet18-224", "  first call (kernel fit + inverse + 1 query)", 1, tFirst, 0, Measure.PeakRssMiB(), "");
        }

        // TracIn-last self-influence, one checkpoint: the last layer's gradient is formed from the
        // forward pass (no backward through the network).
        using (var tracin = new TracInCPFast(new[] { new TracInCheckpoint(model, 1.0) }, options: new TracInFastOptions { TrainBatchSize = Batch, QueryBatchSize = Batch }))
        {
            double t = Measure.Seconds(() => tracin.SelfInfluence(train));
            yield return Row("TracIn-last self-influence (1 checkpoint)", n, t, fwd, "forward");
        }
        try { Directory.Delete(tmp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>What keying the image folder's decode cache on content costs: for the folder in
    /// $INFLUENCESHARP_BENCH_IMAGEFOLDER (its first `--n` images, default all; run once before so the
    /// cache exists), reading every file, SHA-256 of every file (what the reader does, in parallel) and
    /// a whole cached load (list, hash, map the cache, split), each with the files in the page cache
    /// (second of two runs).</summary>
    public static IEnumerable<BenchResult> ImageFolderHash(BenchContext c)
    {
        string dir = Environment.GetEnvironmentVariable("INFLUENCESHARP_BENCH_IMAGEFOLDER")
            ?? throw new InvalidOperationException("set INFLUENCESHARP_BENCH_IMAGEFOLDER to an image folder");
        var files = Directory.EnumerateFiles(dir, "*.png", SearchOption.AllDirectories).Order(StringComparer.Ordinal).ToList();
        if (c.N < files.Count) files = files.Take(c.N).ToList();
        long bytes = files.Sum(f => new FileInfo(f).Length);
        var po = new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount };
        double Read() => Measure.Seconds(() => Parallel.ForEach(files, po, f => File.ReadAllBytes(f)));
        double Hash() => Measure.Seconds(() => Parallel.ForEach(files, po, f =>
        {
            using var s = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            System.Security.Cryptography.SHA256.HashData(s);
        }));
        Read();
        double tRead = Read();
        Hash();
        double tHash = Hash();
        string note = $"{files.Count} files, {bytes / 1e6:F1} MB, {Environment.ProcessorCount} threads";
        yield return new BenchResult("imagefolder-hash", "read every file", files.Count, tRead, 0, Measure.PeakRssMiB(), note);
        yield return new BenchResult("imagefolder-hash", "SHA-256 of every file", files.Count, tHash, 0, Measure.PeakRssMiB(), $"{bytes / 1e6 / tHash:F0} MB/s");
        DataSource.Load("imagefolder:" + dir);
        double tLoad = Measure.Seconds(() => DataSource.Load("imagefolder:" + dir));
        yield return new BenchResult("imagefolder-hash", "cached load of the whole folder (list + hash + map)", -1, tLoad, 0, Measure.PeakRssMiB(), "all images of the folder");
    }
}
