using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// Fits factors in passes over the training data, each a sum over examples:
/// covariance (K-FAC/EK-FAC: A = E[a aᵀ] over examples and positions, S = E_examples[Σ_t g gᵀ]),
/// eigendecomposition in float64, then the eigenvalue refit (EK-FAC: Λ = E[(Q_Sᵀ G Q_A)²]) or the
/// diagonal (E[G⊙G]). Work is split into partitions whose partial sums are saved as they finish:
/// an interrupted fit resumes, and shards (i/n) can run as separate processes over a shared directory.
/// </summary>
public sealed class FactorFitter
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly IAttributionTask task;
    private readonly FactorOptions o;
    private readonly Profiler profiler;
    private readonly List<TrackedLayer> layers;

    public FactorFitter(nn.Module<Tensor, Tensor> model, IAttributionTask task, FactorOptions options, Profiler? profiler = null)
    {
        this.model = model; this.task = task; o = options; this.profiler = profiler ?? new Profiler();
        layers = TrackedLayer.Find(model, o.Layers);
        if (o.TrainBatchSize < 1) throw new InfluenceSharpException($"--batch-size {o.TrainBatchSize}: must be at least 1");
        if (o.PartitionSize < 1) throw new InfluenceSharpException($"--partition-size {o.PartitionSize}: must be at least 1");
    }

    public IReadOnlyList<TrackedLayer> Layers => layers;

    public FactorsManifest ManifestFor(IDataset train) => new()
    {
        Strategy = o.Strategy, Fisher = o.Fisher, ModelFingerprint = ModelFingerprint.Of(model),
        DataFingerprint = train.Fingerprint(), TrainCount = train.Count,
        Layers = FactorsManifest.ShapesOf(layers), PartitionSize = o.PartitionSize, Seed = o.Seed,
    };

    /// <summary>Fits the factors. With a directory, partial results are saved there and reused; the
    /// finished factors are saved too. Returns null when this shard's part is done but other shards'
    /// partitions are still missing.</summary>
    /// <remarks>Locking (see <see cref="OutputLock"/>): without a shard the factors directory is
    /// locked as a whole for the fit, so a second fit into it is refused naming the first; a shard
    /// locks each partition it computes; the manifest is checked under its own lock. Partials are
    /// checked (shapes, example count, partition) before they are summed. A fit without a shard
    /// removes the partials once the factors are saved.</remarks>
    public Factors? Fit(IDataset train, string? dir = null, Shard? shard = null)
    {
        var sh = shard ?? Shard.All;
        var manifest = ManifestFor(train);
        if (dir is not null && File.Exists(Path.Combine(dir, Factors.FactorsFile)))
        {
            // Finished factors are only read, under a shared lock: fits and scorers reading the same
            // factors run side by side, and a writer cannot replace them meanwhile.
            using var read = DirectoryLock.AcquireShared(dir, "reading the factors");
            if (File.Exists(Path.Combine(dir, Factors.FactorsFile)))
                return profiler.Time("Load All Factors", () => Factors.Load(dir, manifest));
        }
        using var stage = dir is null ? null : OutputLock.Stage(dir, "factors", sh);
        if (dir is not null)
        {
            Directory.CreateDirectory(dir);
            OutputLock.CleanStaleTemps(dir);
            OutputLock.CleanStaleTemps(Path.Combine(dir, "partials"));
            string mpath = Path.Combine(dir!, Factors.ManifestFile);
            using (OutputLock.Manifest(dir, "factors"))
            {
                if (File.Exists(mpath)) Json.ReadFile<FactorsManifest>(mpath).Require(manifest, mpath);
                else Json.WriteFile(mpath, manifest with { Checksums = new() });
            }
            if (File.Exists(Path.Combine(dir, Factors.FactorsFile)))
            {
                if (stage is not null) OutputLock.RemovePartials(Path.Combine(dir, "partials"));
                return profiler.Time("Load All Factors", () => Factors.Load(dir, manifest));
            }
        }
        model.eval();
        var result = o.Strategy switch
        {
            FactorStrategy.Identity => new Factors(manifest, layers.Select(l => new LayerFactors(l.Name, o.Strategy, null, null, null, null, null)).ToList()),
            FactorStrategy.Diagonal => FitDiagonal(train, dir, sh, manifest),
            _ => FitKronecker(train, dir, sh, manifest),
        };
        if (result is not null && dir is not null)
        {
            using (OutputLock.Manifest(dir, "factors"))
                profiler.Time("Save Factors", () => result.Save(dir));
            // Only a whole-output writer removes the partials: another shard may still be reading them.
            if (stage is not null) OutputLock.RemovePartials(Path.Combine(dir, "partials"));
        }
        return result;
    }

    private Factors? FitDiagonal(IDataset train, string? dir, Shard sh, FactorsManifest manifest)
    {
        var sums = RunPartitions("diagonal", "Fit Diagonal", train, dir, sh, LambdaInit(), null, (lb, acc, i) => AccumulateSquares(lb, acc[i], null, null, o.MemoryBytes));
        if (sums is null) return null;
        var (acc, count) = sums.Value;
        return new Factors(manifest, layers.Select((l, i) => new LayerFactors(l.Name, o.Strategy, null, null, null, null, acc[i] / count)).ToList());
    }

    private Factors? FitKronecker(IDataset train, string? dir, Shard sh, FactorsManifest manifest)
    {
        // Pass 1: covariances. Slot 2i holds A_i (sum over positions), 2i+1 holds S_i; the extra last
        // slot counts positions (examples × T) per layer.
        Func<Tensor[]> covInit = () => layers.SelectMany(l => new[] { torch.zeros(l.In, l.In, dtype: ScalarType.Float64), torch.zeros(l.Out, l.Out, dtype: ScalarType.Float64) })
            .Append(torch.zeros(layers.Count, dtype: ScalarType.Float64)).ToArray();
        // The eigenvalue pass needs the same layer batches again (same weights; the sampled labels
        // of the true Fisher come from the same per-partition seeds): keep the covariance pass's
        // (a, g) while they fit the capture budget, so EK-FAC runs the model once per example. They
        // are kept in a file (beside the factors, else in the temp folder), not in memory, so the
        // process does not grow with the training set.
        using var cache = o.Strategy == FactorStrategy.Ekfac && o.CaptureCacheBytes > 0 ? new CaptureCache(o.CaptureCacheBytes, dir ?? Path.GetTempPath()) : null;
        var cov = RunPartitions("covariance", "Fit Covariance", train, dir, sh, covInit, cache, (lb, acc, i) =>
        {
            acc[2 * i].add_(lb.ACovariance().to(ScalarType.Float64));
            acc[2 * i + 1].add_(lb.SCovariance().to(ScalarType.Float64));
            using var positions = ((double)(lb.BatchSize * lb.Positions)).ToScalar();
            acc[^1][i].add_(positions);
        });
        if (cov is null) return null;
        var (covSums, n) = cov.Value;
        var eig = profiler.Time("Perform Eigendecomposition", () => layers.Select((l, i) =>
        {
            using var scope = NewDisposeScope();
            var aMat = covSums[2 * i] / covSums[^1][i];
            // KFC convention (Grosse & Martens 2016): S is normalised by examples only, S = E_examples[Σ_t g_t g_tᵀ],
            // while A is normalised by examples × positions, so A ⊗ S ≈ T·E_t[a aᵀ] ⊗ E_t[g gᵀ].
            // (Kronfluence divides S by examples × positions too: its conv K-FAC eigenvalues are T times
            // smaller.) Tested against an explicit unfold construction in KfacConvTests.
            var sMat = covSums[2 * i + 1] / n;
            var (eigA, qa) = SymmetricEigen.Decompose(aMat, $"layer {l.Name}: activation covariance A");
            var (eigS, qs) = SymmetricEigen.Decompose(sMat, $"layer {l.Name}: gradient covariance S");
            return (QA: qa.MoveToOuterDisposeScope(), QS: qs.MoveToOuterDisposeScope(), EigA: eigA.MoveToOuterDisposeScope(), EigS: eigS.MoveToOuterDisposeScope());
        }).ToList());
        foreach (var t in covSums) t.Dispose();
        if (o.Strategy == FactorStrategy.Kfac)
            return new Factors(manifest, layers.Select((l, i) => new LayerFactors(l.Name, o.Strategy, eig[i].QA, eig[i].QS, eig[i].EigA, eig[i].EigS, null)).ToList());

        // Pass 2 (EK-FAC): eigenvalues refit in the Kronecker eigenbasis.
        var dtype = ComputeDtype();
        var qaC = eig.Select(e => e.QA.to(dtype)).ToList();
        var qsC = eig.Select(e => e.QS.to(dtype)).ToList();
        cache?.StopRecording();
        var lam = RunPartitions("lambda", "Fit Lambda", train, dir, sh, LambdaInit(), cache, (lb, acc, i) => AccumulateSquares(lb, acc[i], qaC[i], qsC[i], o.MemoryBytes));
        if (lam is null) return null;
        var (lamSums, count) = lam.Value;
        return new Factors(manifest, layers.Select((l, i) => new LayerFactors(l.Name, o.Strategy, eig[i].QA, eig[i].QS, eig[i].EigA, eig[i].EigS, lamSums[i] / count)).ToList());
    }

    private Func<Tensor[]> LambdaInit() => () => layers.Select(l => torch.zeros(l.Out, l.In, dtype: ScalarType.Float64)).ToArray();

    /// <summary>acc += Σ_b (Q_Sᵀ G_b Q_A)⊙² (no basis: G_b⊙²), using the rank-one form for Linear layers.</summary>
    private static void AccumulateSquares(LayerBatch lb, Tensor acc, Tensor? qa, Tensor? qs, long memoryBytes)
    {
        if (lb.RankOne && !lb.IsOneHot)
        {
            var a = lb.A; var g = lb.G;
            if (qa is not null) { a = a.matmul(qa); g = g.matmul(qs!); }
            acc.add_(g.squeeze(1).square().mT.matmul(a.squeeze(1).square()).to(ScalarType.Float64));
        }
        else
            foreach (var c in lb.Chunks(memoryBytes))           // [b, Out, In] slices within the memory budget
            {
                using var scope = NewDisposeScope();             // freed before the next slice is formed
                acc.add_(c.Rotated(qa, qs).square().sum(new long[] { 0 }).to(ScalarType.Float64));
            }
    }

    private ScalarType ComputeDtype() => model.parameters().First().dtype;

    /// <summary>Runs one pass as partitions of the training set, saving each partition's sums; merges
    /// when every partition is present. Returns (sums, example count) or null when partitions owned by
    /// other shards are still missing.</summary>
    private (Tensor[] Sums, double Count)? RunPartitions(string stage, string title, IDataset train, string? dir, Shard sh,
        Func<Tensor[]> init, CaptureCache? cache, Action<LayerBatch, Tensor[], int> accumulate)
    {
        int n = train.Count, parts = (n + o.PartitionSize - 1) / o.PartitionSize;
        string PartName(int p) => $"partials/{stage}-{p:D5}.safetensors";
        string PartPath(int p) => Path.Combine(dir!, PartName(p));
        Tensor[]? total = dir is null ? init() : null;
        double totalCount = 0;
        var todo = Enumerable.Range(0, parts).Where(p => sh.Contains(p) && (dir is null || !File.Exists(PartPath(p)))).ToList();
        long todoExamples = todo.Sum(p => (long)Math.Min(o.PartitionSize, n - p * o.PartitionSize));
        using (profiler.Stage(title))
        using (var bar = todo.Count == 0 ? null : ProgressReporter.Start(o.Progress, title.ToLowerInvariant(), todoExamples))
        using (var capture = new GradientCapture(model, layers))
        {
            long done = 0;
            var device = model.parameters().First().device;
            foreach (var p in todo)
            {
                using var partLock = dir is null ? null : OutputLock.Partition(Path.Combine(dir, "partials"), $"factors ({stage})", p);
                if (dir is not null && File.Exists(PartPath(p))) continue;   // another shard finished it meanwhile
                var acc = init();   // per partition, then added in partition order: the same sums as a resumed or sharded fit
                int start = p * o.PartitionSize, end = Math.Min(n, start + o.PartitionSize);
                using var gen = new Generator((ulong)Seeds.Derive(o.Seed, Seeds.FisherSamples, p), device);
                var idx = Enumerable.Range(start, end - start).ToArray();
                for (int b = 0; b < idx.Length; b += o.TrainBatchSize)
                {
                    using var scope = NewDisposeScope();
                    var span = idx.AsSpan(b, Math.Min(o.TrainBatchSize, idx.Length - b));
                    var key = (p, b);
                    var lbs = cache?.Take(key, device);
                    bool cached = lbs is not null;
                    if (lbs is null)
                    {
                        var x = train.Inputs(span, device);
                        var y = train.Targets(span, device);
                        (_, lbs) = capture.Run(model, x, logits => o.Fisher == FisherType.True ? task.SampledLoss(logits, gen) : task.TrainLoss(logits, y));
                        cache?.Record(key, lbs);
                    }
                    for (int i = 0; i < lbs.Length; i++) accumulate(lbs[i], acc, i);
                    if (cached) foreach (var t in lbs.SelectMany(lb => lb.Stored())) t.Dispose();
                    done += span.Length;
                    bar?.Update(done);
                }
                if (dir is null)
                {
                    for (int i = 0; i < acc.Length; i++) { total![i].add_(acc[i]); acc[i].Dispose(); }
                    totalCount += end - start;
                }
                else
                {
                    var named = acc.Select((t, i) => (t, i)).ToDictionary(x => $"sum{x.i}", x => x.t);
                    named["count"] = torch.tensor(new double[] { end - start });
                    var meta = new Dictionary<string, string> { ["stage"] = stage, ["partition"] = p.ToString(System.Globalization.CultureInfo.InvariantCulture) };
                    profiler.Time($"Save {stage} partition", () => SafeTensors.Save(PartPath(p), named, meta,
                        sum => ManifestChecksums.RecordLocked(dir!, Factors.ManifestFile, PartName(p), sum, "factors")));
                    foreach (var t in named.Values) t.Dispose();
                }
            }
        }
        if (dir is null) return (total!, totalCount);
        if (Enumerable.Range(0, parts).Any(p => !File.Exists(PartPath(p)))) return null;
        return profiler.Time($"Load {stage} partitions", () =>
        {
            var sums = init();
            double count = 0;
            string mpath = Path.Combine(dir!, Factors.ManifestFile);
            var recorded = ManifestChecksums.Read(mpath);
            for (int p = 0; p < parts; p++)
            {
                // The file the manifest recorded (checksum), holding finite sums only.
                using var f = SafeTensors.Load(PartPath(p), ManifestChecksums.Expected(recorded, PartName(p), PartPath(p), mpath), mpath);
                int len = Math.Min(o.PartitionSize, n - p * o.PartitionSize);
                string Bad(string why) => $"{PartPath(p)}: {why} (left over from another fit, or copied from another partition?); delete it to recompute that partition";
                if (f.Metadata.TryGetValue("partition", out var mp) && mp != p.ToString(System.Globalization.CultureInfo.InvariantCulture))
                    throw new InfluenceSharpException(Bad($"holds partition {mp}, not {p}"));
                if (f.Metadata.TryGetValue("stage", out var ms) && ms != stage)
                    throw new InfluenceSharpException(Bad($"holds {ms} sums, not {stage}"));
                if (!f.Tensors.TryGetValue("count", out var countT) || countT.numel() != 1 || countT.item<double>() != len)
                    throw new InfluenceSharpException(Bad($"counts {(f.Tensors.TryGetValue("count", out var c) && c.numel() == 1 ? c.item<double>() : double.NaN)} examples, this partition has {len}"));
                for (int i = 0; i < sums.Length; i++)
                {
                    if (!f.Tensors.TryGetValue($"sum{i}", out var part) || !part.shape.SequenceEqual(sums[i].shape))
                        throw new InfluenceSharpException(Bad($"partial sums sum{i} are missing or have the wrong shape"));
                    FiniteCheck.Require(part, PartPath(p), "delete it to recompute that partition");
                    sums[i].add_(part);
                }
                count += len;
            }
            return (sums, count);
        });
    }
}

/// <summary>Layer batches (a, g) of one pass kept for the next, up to a byte budget, in a file: whole
/// partitions are recorded while they fit, and each batch is read back once. The file is unlinked as
/// soon as it is open (where the system allows), so nothing is left behind by a killed process; its
/// pages live in the page cache, not in the process.</summary>
internal sealed class CaptureCache : IDisposable
{
    private sealed record Slot(long Offset, long[] Shape, ScalarType Dtype, long Size);
    private sealed record Entry(TrackedLayer Layer, bool OneHot, Slot Inputs, Slot Gradients);

    private readonly long budget;
    private readonly string directory;
    private readonly Dictionary<(int Partition, int Batch), Entry[]> entries = new();
    private FileStream? file;
    private long bytes, end;
    private bool recording = true;

    public CaptureCache(long budgetBytes, string directory) { budget = budgetBytes; this.directory = directory; }

    public int Count => entries.Count;

    /// <summary>Bytes of layer batches held in the file (none in memory).</summary>
    public long Bytes => bytes;

    public bool Recording => recording;

    public void StopRecording() => recording = false;

    public void Record((int, int) key, LayerBatch[] lbs)
    {
        if (!recording) return;
        long size = lbs.Sum(lb => lb.Stored().Sum(t => t.numel() * t.ElementSize));
        // (Tensor.bytes spans at most 2 GiB: a larger batch tensor is not kept.)
        if (bytes + size > budget || lbs.Any(lb => lb.Stored().Any(t => t.numel() * t.ElementSize > int.MaxValue)))
        {
            // Keep whole partitions only: a partition replayed in part would draw the true Fisher's
            // labels for its remaining batches from a generator that skipped the cached ones.
            recording = false;
            foreach (var k in entries.Keys.Where(k => k.Partition == key.Item1).ToList())
            {
                entries.Remove(k, out var e);
                bytes -= e!.Sum(x => x.Inputs.Size + x.Gradients.Size);
            }
            return;
        }
        entries[key] = lbs.Select(lb => new Entry(lb.Layer, lb.IsOneHot, Write(lb.Ids ?? lb.A), Write(lb.G))).ToArray();
        bytes += size;
    }

    /// <summary>The recorded batch as layer batches of new tensors (removed from the cache; the caller
    /// disposes them), or null.</summary>
    public LayerBatch[]? Take((int, int) key, Device device)
    {
        if (recording || !entries.Remove(key, out var e)) return null;
        bytes -= e.Sum(x => x.Inputs.Size + x.Gradients.Size);
        return e.Select(x =>
        {
            var inputs = Read(x.Inputs, device);
            var g = Read(x.Gradients, device);
            return x.OneHot ? LayerBatch.OneHot(x.Layer, inputs, g) : new LayerBatch(x.Layer, inputs, g);
        }).ToArray();
    }

    private Slot Write(Tensor t)
    {
        file ??= Open();
        using var c = t.detach().cpu().contiguous();
        var slot = new Slot(end, c.shape, c.dtype, c.numel() * c.ElementSize);
        RandomAccess.Write(file.SafeFileHandle, c.bytes, end);
        end += slot.Size;
        return slot;
    }

    private Tensor Read(Slot s, Device device)
    {
        var t = torch.empty(s.Shape, s.Dtype);
        var span = t.bytes;
        for (int got = 0; got < span.Length;)
        {
            int n = RandomAccess.Read(file!.SafeFileHandle, span[got..], s.Offset + got);
            if (n == 0) { t.Dispose(); throw new InfluenceSharpException($"{file.Name}: EK-FAC's capture cache file ended early (removed or truncated while in use?)"); }
            got += n;
        }
        if (device.type == DeviceType.CPU) return t;
        using (t) return t.to(device);
    }

    private FileStream Open()
    {
        string path = Path.Combine(directory, $".capture-cache-{Guid.NewGuid():N}.tmp");
        try
        {
            Directory.CreateDirectory(directory);
            var fs = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Delete, 1, FileOptions.DeleteOnClose);
            try { File.Delete(path); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* removed on close instead */ }
            return fs;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InfluenceSharpException($"{directory}: cannot write EK-FAC's capture cache there ({e.Message}); free space there (in code, FactorOptions.CaptureCacheBytes = 0 recomputes instead)", e);
        }
    }

    public void Dispose()
    {
        entries.Clear();
        file?.Dispose();
        file = null;
    }
}
