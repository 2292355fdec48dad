using System.Diagnostics;
using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>Settings of the LDS retraining. Masks come from <see cref="Seed"/>; the training seed of
/// subset j, replicate r, is derived from (TrainOptions.Seed, j, r).</summary>
public sealed record LdsOptions
{
    /// <summary>Number of random subsets m.</summary>
    public int Subsets { get; init; } = 32;
    /// <summary>Fraction of the training set in each subset.</summary>
    public double Alpha { get; init; } = 0.5;
    /// <summary>Seed of the subset masks.</summary>
    public int Seed { get; init; }
    /// <summary>Models trained per subset (different training seeds); targets are their mean.</summary>
    public int SeedsPerSubset { get; init; } = 1;
    /// <summary>How a subset is retrained.</summary>
    public LdsRetrain Retrain { get; init; } = LdsRetrain.Seeds;
    /// <summary>Index of the first query in the set the queries were taken from (e.g. test examples
    /// K..K+N−1). Recorded in the manifest so that a cache is never read for other queries.</summary>
    public int QueryOffset { get; init; }
}

/// <summary>How LDS retrains a model on a subset.</summary>
public enum LdsRetrain
{
    /// <summary>On the subset alone with a seed derived from the subset and replicate (its own
    /// initialisation and data order): the averaged-over-training-randomness protocol.</summary>
    Seeds,
    /// <summary>The run itself replayed with the removed examples' weights set to 0: the run's seed,
    /// initial weights and batches, each batch without the removed examples (the single-model setting
    /// in which unrolled derivatives are exact). One model per subset.</summary>
    SameOrder,
}

/// <summary>What an LDS cache directory was made with; a run with other settings is refused.</summary>
public sealed record LdsManifest
{
    public string Format { get; init; } = "influencesharp-lds/1";
    public required ModelSpec Model { get; init; }
    public required TrainOptions Training { get; init; }
    public required string DataFingerprint { get; init; }
    public int TrainCount { get; init; }
    /// <summary>Index of the first query in its set; absent for 0 (caches written before it was recorded).</summary>
    public int? QueryOffset { get; init; }
    public required string QueryFingerprint { get; init; }
    public int QueryCount { get; init; }
    public double Alpha { get; init; }
    public int Seed { get; init; }
    public int Subsets { get; init; }
    public int SeedsPerSubset { get; init; }
    /// <summary>"same-order" for <see cref="LdsRetrain.SameOrder"/>; absent for the seeded protocol.</summary>
    public string? Retrain { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
}

/// <summary>The LDS targets of every subset: [m, n_query] means over the seeds of each subset.</summary>
public sealed record LdsTargets(bool[][] Masks, double[,] Margins, double[,] Losses)
{
    /// <summary>−loss, for an LDS on the loss (larger = better for the query, like the margin).</summary>
    public double[,] NegativeLosses()
    {
        var r = (double[,])Losses.Clone();
        for (int j = 0; j < r.GetLength(0); j++)
            for (int q = 0; q < r.GetLength(1); q++) r[j, q] = -r[j, q];
        return r;
    }
}

/// <summary>
/// Retrains a model on each LDS subset and records each query's margin and loss. Each subset's
/// result is one file, written atomically (subset-NNNNN.safetensors: mask, margins and losses per
/// seed, float64), next to a manifest (lds.json). Running again trains only the subsets without a
/// file, so an interrupted run resumes, and n processes with shards 0/n..n−1/n share the work.
/// </summary>
public sealed class LdsRun
{
    private const string ManifestFile = "lds.json";
    private readonly ModelSpec model;
    private readonly TrainOptions training;
    private readonly LabeledDataset train, queries;

    /// <summary>Opens the cache directory (creating it and its manifest if new); throws, naming the
    /// field, if it holds results made with other settings.</summary>
    public LdsRun(string cacheDir, ModelSpec model, TrainOptions training, LabeledDataset train, LabeledDataset queries, LdsOptions? options = null)
    {
        Options = options ?? new LdsOptions();
        if (Options.SeedsPerSubset < 1) throw new InfluenceSharpException($"--seeds-per-subset {Options.SeedsPerSubset}: must be at least 1");
        if (Options.QueryOffset < 0) throw new InfluenceSharpException($"--query-offset {Options.QueryOffset}: must be at least 0");
        if (Options.Retrain == LdsRetrain.SameOrder)
        {
            if (Options.SeedsPerSubset != 1) throw new InfluenceSharpException($"--retrain same-order: replays the run itself, one model per subset; --seeds-per-subset {Options.SeedsPerSubset} does not apply");
            if (training.LbfgsTolerance is not null) throw new InfluenceSharpException("--retrain same-order: needs a minibatch SGD run (this one was fitted by full-batch L-BFGS)");
        }
        CacheDir = cacheDir; this.model = model; this.training = training; this.train = train; this.queries = queries;
        Masks = LdsSubsets.Masks(train.Count, Options.Subsets, Options.Alpha, Options.Seed);
        Manifest = new LdsManifest
        {
            Model = model, Training = training, DataFingerprint = train.Fingerprint(), TrainCount = train.Count,
            QueryOffset = Options.QueryOffset == 0 ? null : Options.QueryOffset,
            QueryFingerprint = queries.Fingerprint(), QueryCount = queries.Count,
            Alpha = Options.Alpha, Seed = Options.Seed, Subsets = Options.Subsets, SeedsPerSubset = Options.SeedsPerSubset,
            Retrain = Options.Retrain == LdsRetrain.SameOrder ? "same-order" : null,
        };
        string path = Path.Combine(cacheDir, ManifestFile);
        Directory.CreateDirectory(cacheDir);
        OutputLock.CleanStaleTemps(cacheDir);
        using (OutputLock.Manifest(cacheDir, "LDS cache"))
        {
            if (File.Exists(path))
            {
                // Other queries also change the fingerprint; naming the offset first says why.
                RequireSameQueryOffset(path, Options.QueryOffset);
                ManifestCheck.RequireSame(path, Manifest, "library_version");
            }
            else Json.WriteFile(path, Manifest);
        }
    }

    private static void RequireSameQueryOffset(string path, int wanted)
    {
        int stored;
        try
        {
            using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(path));
            stored = doc.RootElement.ValueKind == System.Text.Json.JsonValueKind.Object
                && doc.RootElement.TryGetProperty("query_offset", out var v) && v.TryGetInt32(out int k) ? k : 0;
        }
        catch (System.Text.Json.JsonException) { return; }   // the full check below names the broken file
        if (stored != wanted)
            throw new InfluenceSharpException(string.Create(CultureInfo.InvariantCulture,
                $"{path}: this cache was made with other settings: field 'query_offset' is {stored} there but {wanted} now (its queries start at example {stored}; use another directory, or --query-offset {stored})"));
    }

    public string CacheDir { get; }
    public LdsOptions Options { get; }
    public LdsManifest Manifest { get; }
    public bool[][] Masks { get; }

    public string SubsetPath(int j) => Path.Combine(CacheDir, $"subset-{j:D5}.safetensors");

    /// <summary>Subsets of this shard that have no result file yet.</summary>
    public int[] Pending(Shard? shard = null)
    {
        var s = shard ?? Shard.All;
        return Enumerable.Range(0, Options.Subsets).Where(j => s.Contains(j) && !File.Exists(SubsetPath(j))).ToArray();
    }

    /// <summary>Trains the pending subsets of this shard; returns the ones it trained. Cancelling
    /// stops between models; finished subsets stay saved.</summary>
    /// <remarks>Locking (see <see cref="OutputLock"/>): without a shard the cache is locked as a
    /// whole for the run; each subset is trained under its own lock, re-checking that it is still
    /// missing, so shards of one job run together.</remarks>
    public int[] Run(Shard? shard = null, Action<string>? log = null, CancellationToken cancel = default)
    {
        using var stage = OutputLock.Stage(CacheDir, "LDS retraining", shard ?? Shard.All);
        var todo = Pending(shard);
        var done = new List<int>();
        foreach (int j in todo)
        {
            if (cancel.IsCancellationRequested) break;
            using var subsetLock = OutputLock.Partition(CacheDir, "LDS retraining", j);
            if (File.Exists(SubsetPath(j))) continue;   // another shard trained it meanwhile
            var sw = Stopwatch.StartNew();
            var subset = train.Subset(LdsSubsets.Indices(Masks[j]), $"{train.Name}[lds {j}]");
            int r = Options.SeedsPerSubset, nq = queries.Count;
            var margins = new double[r * nq];
            var losses = new double[r * nq];
            for (int k = 0; k < r; k++)
            {
                cancel.ThrowIfCancellationRequested();
                var result = Options.Retrain == LdsRetrain.SameOrder
                    ? new Trainer(training).Train(model, train, null, null, exampleWeights: Masks[j].Select(b => b ? 1.0 : 0.0).ToArray())
                    : new Trainer(training with { Seed = Seeds.Derive(training.Seed, j, k) }).Train(model, subset, null, null);
                using var m = result.Model;
                var meas = Measurements.Of(m, queries);
                meas.Margin.CopyTo(margins, k * nq);
                meas.Loss.CopyTo(losses, k * nq);
            }
            Save(j, margins, losses);
            done.Add(j);
            // Token sequences have no margin: their measurement is the loss.
            var (what, mean) = double.IsNaN(margins[0]) ? ("loss", losses.Average()) : ("margin", margins.Average());
            log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"lds: subset {j + 1}/{Options.Subsets} ({subset.Count} examples, {r} model(s)) in {sw.Elapsed.TotalSeconds:F1}s, mean {what} {mean:F4}"));
        }
        return done.ToArray();
    }

    private void Save(int j, double[] margins, double[] losses)
    {
        int r = Options.SeedsPerSubset, nq = queries.Count;
        using var mask = torch.tensor(Masks[j].Select(b => (byte)(b ? 1 : 0)).ToArray());
        using var mt = torch.tensor(margins, new long[] { r, nq });
        using var lt = torch.tensor(losses, new long[] { r, nq });
        SafeTensors.Save(SubsetPath(j), new Dictionary<string, Tensor> { ["mask"] = mask, ["margins"] = mt, ["losses"] = lt },
            new Dictionary<string, string> { ["subset"] = j.ToString(CultureInfo.InvariantCulture), ["format"] = "influencesharp-lds-subset/1" });
    }

    /// <summary>Reads every subset's result. Fails, naming them, if some subsets are not done, and if a
    /// file's mask or shape is not what this cache's settings give.</summary>
    /// <param name="replicate">null: the mean over each subset's seeds; k: the k-th seed's model only
    /// (e.g. to compare one seed per subset with the mean, or one seed with another: the noise ceiling).</param>
    public LdsTargets LoadTargets(int? replicate = null)
    {
        if (replicate is { } rep && (rep < 0 || rep >= Options.SeedsPerSubset))
            throw new InfluenceSharpException($"LDS replicate {rep}: this cache has {Options.SeedsPerSubset} seed(s) per subset");
        var missing = Pending();
        if (missing.Length > 0)
            throw new InfluenceSharpException($"{CacheDir}: {missing.Length} of {Options.Subsets} LDS subsets are not trained yet (first: {string.Join(", ", missing.Take(5))}); run it (again) to finish");
        int m = Options.Subsets, nq = queries.Count, r = Options.SeedsPerSubset;
        var margins = new double[m, nq];
        var losses = new double[m, nq];
        for (int j = 0; j < m; j++)
        {
            string path = SubsetPath(j);
            using var f = SafeTensors.Load(path);
            var mask = f["mask"].data<byte>().ToArray();
            if (mask.Length != Masks[j].Length || mask.Where((b, i) => (b != 0) != Masks[j][i]).Any())
                throw new InfluenceSharpException($"{path}: its subset mask is not mask {j} of this cache's seed and alpha");
            foreach (var (name, dest) in new[] { ("margins", margins), ("losses", losses) })
            {
                var t = f[name];
                if (t.dtype != ScalarType.Float64 || !t.shape.SequenceEqual(new long[] { r, nq }))
                    throw new InfluenceSharpException($"{path}: '{name}' is {t.dtype} [{string.Join(", ", t.shape)}], expected Float64 [{r}, {nq}]");
                var v = t.data<double>().ToArray();
                for (int q = 0; q < nq; q++)
                {
                    if (replicate is { } one) { dest[j, q] = v[one * nq + q]; continue; }
                    double s = 0;
                    for (int k = 0; k < r; k++) s += v[k * nq + q];
                    dest[j, q] = s / r;
                }
            }
        }
        return new LdsTargets(Masks, margins, losses);
    }
}
