using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Scores;

/// <summary>manifest.json of a scores directory: what produced the scores.</summary>
public sealed record ScoresManifest
{
    public string Format { get; init; } = "influencesharp-scores/1";
    public required string Kind { get; init; }
    public required string Method { get; init; }
    public required Dictionary<string, string> Settings { get; init; }
    public required string ModelFingerprint { get; init; }
    public required string TrainFingerprint { get; init; }
    public required int TrainCount { get; init; }
    public string? QueryFingerprint { get; init; }
    public int QueryCount { get; init; }
    public int[]? QueryIndices { get; init; }
    public string? QuerySet { get; init; }
    public required int PartitionSize { get; init; }
    /// <summary>Queries scored per pass over the training set; 0 = all at once (also in manifests
    /// written before query blocks existed).</summary>
    public int QueryBlock { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
    /// <summary>Checksums of the partials and results (see <see cref="Checksum"/>); null in a manifest
    /// written before checksums were recorded (its files are then read unverified).</summary>
    public Dictionary<string, string>? Checksums { get; init; }

    /// <summary>The manifest of a scores job: <paramref name="kind"/> "pairwise" (with its queries:
    /// the set, its indices in the set and the name of the set) or "self".</summary>
    public static ScoresManifest For(string kind, string method, Dictionary<string, string> settings, string modelFingerprint, LabeledDataset train,
        int partitionSize, (LabeledDataset Queries, int[] Indices, string Set)? queries = null, int queryBlock = 0) => new()
    {
        Kind = kind, Method = method, Settings = settings, ModelFingerprint = modelFingerprint,
        TrainFingerprint = train.Fingerprint(), TrainCount = train.Count, PartitionSize = partitionSize,
        QueryFingerprint = queries?.Queries.Fingerprint(), QueryCount = queries?.Queries.Count ?? 0,
        QueryIndices = queries?.Indices, QuerySet = queries?.Set,
        // Stored only when it splits the queries, so that one block reads as before.
        QueryBlock = queries is { } q && queryBlock > 0 && queryBlock < q.Queries.Count ? queryBlock : 0,
    };

    public void Require(ScoresManifest expected, string path)
    {
        void Check(string field, object? found, object? want)
        {
            if (!Equals(found, want))
                throw new InfluenceSharpException($"{path}: existing scores were made with {field} = {found}, this run has {field} = {want}; use another --out or delete it");
        }
        Check("kind", Kind, expected.Kind);
        // Older versions named some methods otherwise (if-ekfac for ekfac): the same method.
        Check("method", MethodNames.Canonical(Method), MethodNames.Canonical(expected.Method));
        Check("settings", string.Join(",", Settings.OrderBy(k => k.Key).Select(k => $"{k.Key}={k.Value}")),
              string.Join(",", expected.Settings.OrderBy(k => k.Key).Select(k => $"{k.Key}={k.Value}")));
        Check("model_fingerprint", ModelFingerprint, expected.ModelFingerprint);
        Check("train_fingerprint", TrainFingerprint, expected.TrainFingerprint);
        Check("query_fingerprint", QueryFingerprint, expected.QueryFingerprint);
        Check("partition_size", PartitionSize, expected.PartitionSize);
        if (QueryBlock != expected.QueryBlock)
            throw new InfluenceSharpException($"{path}: existing scores were made with query_block = {QueryBlock}, this run has query_block = {expected.QueryBlock} "
                + $"(0: all queries in one block); pass --query-block {(QueryBlock == 0 ? QueryCount : QueryBlock)} to resume them, use another --out or delete it");
    }
}

/// <summary>
/// Runs a scoring job as partitions of the training set whose results are saved as they finish
/// (partials/*.npy), so an interrupted job resumes and `--shard i/n` processes can split the work.
/// When every partition is present the partials are merged into the final .npy files, which appear
/// only when complete.
/// </summary>
public static class PartitionedScoring
{
    public const string PairwiseFile = "scores.npy", SelfFile = "self_influence.npy";

    /// <summary>Produces, for a block of queries and a training subset, blocks of one or more
    /// matrices [n_query, block] (index 0 = total scores, then optional per-layer scores named by
    /// <c>names</c>).</summary>
    public delegate void BlockProducer(IDataset queries, IDataset train, Action<int, Tensor[]> sink);

    public static BlockProducer Totals(IAttributionMethod method) =>
        (queries, train, sink) => method.Pairwise(queries, train, (off, block) => sink(off, new[] { block }));

    /// <summary>Returns true when the final scores exist (this call or an earlier one finished them).
    /// The queries are scored <see cref="ScoresManifest.QueryBlock"/> at a time (all at once when
    /// it is 0), each block over every partition before the next block, so that what a method holds
    /// per query (its solved or preconditioned query gradients) is bounded by one block; a partial
    /// file holds one (partition, query block). Locking (see <see cref="OutputLock"/>): without a
    /// shard the whole output is locked for the stage; a shard locks each partial it computes; the
    /// merge runs under the manifest lock. Every partial is checked (shape) before it is merged: a
    /// wrong one is an error naming the file.</summary>
    public static bool Pairwise(BlockProducer produce, string[] names, IDataset queries, IDataset train, string outDir,
        ScoresManifest manifest, Shard shard, Profiler profiler)
    {
        const string what = "pairwise scores";
        using var stage = OutputLock.Stage(outDir, what, shard);
        Prepare(outDir, manifest, what);
        var finals = names.Select(n => Path.Combine(outDir, n + ".npy")).ToArray();
        if (finals.All(File.Exists)) return true;
        int queryCount = queries.Count;
        int parts = Parts(train.Count, manifest.PartitionSize);
        int qBlock = manifest.QueryBlock is > 0 and var qb && qb < queryCount ? qb : queryCount;
        int qBlocks = (queryCount + qBlock - 1) / qBlock;
        string partials = Path.Combine(outDir, "partials");
        // With one query block the partials keep the names they had before query blocks existed.
        string Part(int p, int b, string name) => Path.Combine(partials, qBlocks == 1 ? $"{name}-{p:D5}.npy" : $"{name}-{p:D5}-q{b:D5}.npy");
        int Len(int p) => Math.Min(manifest.PartitionSize, train.Count - p * manifest.PartitionSize);
        int QLen(int b) => Math.Min(qBlock, queryCount - b * qBlock);
        bool Done(int p, int b) => names.All(n => File.Exists(Part(p, b, n)));
        {   // the method records its own "Compute Pairwise Score" stage
            for (int b = 0; b < qBlocks; b++)
            {
                // One slice per block for all partitions: a method that caches its solved queries
                // by the query set reuses them across partitions.
                var block = Slice(queries, b * qBlock, QLen(b));
                for (int p = 0; p < parts; p++)
                {
                    if (!shard.Contains(p) || Done(p, b)) continue;
                    using var partLock = qBlocks == 1 ? OutputLock.Partition(partials, what, p) : OutputLock.Partition(partials, what, p, b);
                    if (Done(p, b)) continue;   // another shard finished it meanwhile
                    int start = p * manifest.PartitionSize, len = Len(p);
                    var writers = names.Select(n => new NpyBlockWriter(Part(p, b, n), QLen(b), len)).ToArray();
                    try
                    {
                        produce(block, Slice(train, start, len), (off, blocks) =>
                        {
                            for (int i = 0; i < writers.Length; i++) writers[i].WriteColumns(off, blocks[i]);
                        });
                        for (int i = 0; i < writers.Length; i++) writers[i].Complete(Recorder(outDir, Part(p, b, names[i]), what));
                    }
                    finally { foreach (var w in writers) w.Dispose(); }
                }
            }
        }
        var units = (from p in Enumerable.Range(0, parts) from b in Enumerable.Range(0, qBlocks) select (p, b)).ToArray();
        if (units.Any(u => !Done(u.p, u.b))) return finals.All(File.Exists);
        using var merge = OutputLock.TryMerge(outDir, what);
        if (merge is null || finals.All(File.Exists)) return finals.All(File.Exists);   // another shard is merging (or has)
        foreach (var (p, b) in units)
            foreach (var n in names) RequireShape(Part(p, b, n), new long[] { QLen(b), Len(p) });
        string mpath = Path.Combine(outDir, ManifestFile);
        var sums = ManifestChecksums.Read(mpath);
        using (profiler.Stage("Save Pairwise Score"))
        {
            for (int i = 0; i < names.Length; i++)
            {
                using var w = new NpyBlockWriter(finals[i], queryCount, train.Count, rowBlock: qBlock);
                foreach (var (p, b) in units)
                {
                    using var scope = NewDisposeScope();
                    w.WriteBlock(b * qBlock, p * manifest.PartitionSize, ReadPartial(outDir, Part(p, b, names[i]), sums, mpath));
                }
                // The merge holds the manifest lock: record directly.
                w.Complete(sum => ManifestChecksums.Record(mpath, Path.GetFileName(finals[i]), sum));
            }
        }
        OutputLock.RemovePartials(partials);
        return true;
    }

    /// <summary>Self-influence in partitions; returns the scores when complete, else null. Locking and
    /// checks as in <see cref="Pairwise"/>.</summary>
    public static double[]? Self(IAttributionMethod method, IDataset train, string outDir, ScoresManifest manifest, Shard shard, Profiler profiler)
    {
        const string what = "self-influence scores";
        using var stage = OutputLock.Stage(outDir, what, shard);
        Prepare(outDir, manifest, what);
        string final = Path.Combine(outDir, SelfFile), mpath = Path.Combine(outDir, ManifestFile);
        if (File.Exists(final)) return ReadFinal(final, mpath);
        int parts = Parts(train.Count, manifest.PartitionSize);
        string partials = Path.Combine(outDir, "partials");
        string Part(int p) => Path.Combine(partials, $"self-{p:D5}.npy");
        int Len(int p) => Math.Min(manifest.PartitionSize, train.Count - p * manifest.PartitionSize);
        for (int p = 0; p < parts; p++)
        {
            if (!shard.Contains(p) || File.Exists(Part(p))) continue;
            using var partLock = OutputLock.Partition(partials, what, p);
            if (File.Exists(Part(p))) continue;
            int start = p * manifest.PartitionSize, len = Len(p);
            var s = method.SelfInfluence(Slice(train, start, len));
            if (s.Length != len) throw new InfluenceSharpException($"{method.Name}: self-influence of {len} examples returned {s.Length} values");
            int bad = Array.FindIndex(s, v => !double.IsFinite(v));
            if (bad >= 0)
                throw new InfluenceSharpException($"{method.Name}: the self-influence of training example {start + bad} is {s[bad]} (not finite): the model or the method's settings (e.g. --damping) give no usable scores");
            Npy.Write(Part(p), s, new long[] { s.Length }, Recorder(outDir, Part(p), what));
        }
        if (Enumerable.Range(0, parts).Any(p => !File.Exists(Part(p)))) return File.Exists(final) ? ReadFinal(final, mpath) : null;
        using var merge = OutputLock.TryMerge(outDir, what);
        if (merge is null || File.Exists(final)) return File.Exists(final) ? ReadFinal(final, mpath) : null;
        for (int p = 0; p < parts; p++) RequireShape(Part(p), new long[] { Len(p) });
        var sums = ManifestChecksums.Read(mpath);
        var all = Enumerable.Range(0, parts).SelectMany(p =>
        {
            using var t = ReadPartial(outDir, Part(p), sums, mpath);
            using var d = t.to(ScalarType.Float64);
            return d.data<double>().ToArray();
        }).ToArray();
        // The merge holds the manifest lock: record directly.
        profiler.Time("Save Self-Influence Score", () => Npy.Write(final, all, new long[] { all.Length }, sum => ManifestChecksums.Record(mpath, SelfFile, sum)));
        OutputLock.RemovePartials(partials);
        return all;
    }

    /// <summary>Throws, naming the file, when a partial does not have the shape its partition needs
    /// (e.g. a file copied from another job, or one written with another partition size).</summary>
    static void RequireShape(string path, long[] shape)
    {
        long[] found = Npy.ReadHeader(path).Shape;
        if (!found.SequenceEqual(shape))
            throw new InfluenceSharpException($"{path}: partial has shape [{string.Join(", ", found)}], this partition needs [{string.Join(", ", shape)}] (left over from another job?); delete it to recompute that partition");
    }

    public static double[] ReadVector(string path)
    {
        using var t = Npy.Read(path);
        using var d = t.to(ScalarType.Float64);
        return d.data<double>().ToArray();
    }

    public const string ManifestFile = "manifest.json";

    /// <summary>Records a partial's checksum in the manifest (under the manifest lock) before the
    /// partial is renamed into place.</summary>
    static Action<string> Recorder(string outDir, string path, string what) =>
        sum => ManifestChecksums.RecordLocked(outDir, ManifestFile, Relative(outDir, path), sum, what);

    static string Relative(string outDir, string path) => Path.GetRelativePath(outDir, path).Replace('\\', '/');

    /// <summary>A partial as the merge reads it: the file the manifest recorded (checksum), holding
    /// finite values only; otherwise an error naming the file.</summary>
    static Tensor ReadPartial(string outDir, string path, Dictionary<string, string>? sums, string mpath)
    {
        var t = Npy.Read(path, ManifestChecksums.Expected(sums, Relative(outDir, path), path, mpath), mpath);
        FiniteCheck.Require(t, path, "delete it to recompute that partition");
        return t;
    }

    /// <summary>A final result, checked against its recorded checksum.</summary>
    static double[] ReadFinal(string path, string mpath)
    {
        using var t = Npy.Read(path, ManifestChecksums.Expected(ManifestChecksums.Read(mpath), Path.GetFileName(path), path, mpath), mpath);
        using var d = t.to(ScalarType.Float64);
        return d.data<double>().ToArray();
    }


    /// <summary>The whole set is passed as itself (so stores keyed by its fingerprint are reused).</summary>
    static IDataset Slice(IDataset set, int start, int len) => start == 0 && len == set.Count ? set : SubsetDataset.Range(set, start, len);

    static int Parts(int n, int size)
    {
        if (size < 1) throw new InfluenceSharpException($"--partition-size {size}: must be at least 1");
        return Math.Max(1, (n + size - 1) / size);
    }

    static void Prepare(string outDir, ScoresManifest manifest, string what)
    {
        string partials = Path.Combine(outDir, "partials");
        Directory.CreateDirectory(partials);
        OutputLock.CleanStaleTemps(outDir);
        OutputLock.CleanStaleTemps(partials);
        using var mlock = OutputLock.Manifest(outDir, what);
        string mpath = Path.Combine(outDir, ManifestFile);
        if (File.Exists(mpath)) Json.ReadFile<ScoresManifest>(mpath).Require(manifest, mpath);
        else Json.WriteFile(mpath, manifest with { Checksums = new() });
    }
}
