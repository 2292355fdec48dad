using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Features;

/// <summary>Turns examples into per-example feature rows (stacked last-layer factors, projected
/// gradients, TRAK features...). The training side is computed once into a <see cref="FeatureStore"/>.</summary>
public interface IFeaturizer
{
    /// <summary>Identifies what the features are ("tracin-last", "trak", ...), for manifests.</summary>
    string Method { get; }
    /// <summary>Every setting that changes the features (snake_case keys), for manifests.</summary>
    IReadOnlyDictionary<string, string> Settings { get; }
    /// <summary>Fingerprints of the models/checkpoints the features come from, in order.</summary>
    IReadOnlyList<string> ModelFingerprints { get; }
    /// <summary>Width of the "features" tensor.</summary>
    long Dim { get; }

    /// <summary>Features of a batch: "features" [B, Dim] plus method-specific extras [B, ...]
    /// (e.g. TRAK's "q"). Query features may differ from training ones (e.g. loss vs. margin).
    /// Called inside a dispose scope.</summary>
    Dictionary<string, Tensor> Compute(IDataset data, ReadOnlySpan<int> indices, bool query);
}

/// <summary>manifest.json of a feature store: what the features were computed from and how.</summary>
public sealed record FeatureStoreManifest
{
    public string Format { get; init; } = "influencesharp-features/1";
    public required string Method { get; init; }
    public required Dictionary<string, string> Settings { get; init; }
    public required string[] Models { get; init; }
    public required string DataFingerprint { get; init; }
    public required int Count { get; init; }
    public required int BlockSize { get; init; }
    public required long Dim { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
    /// <summary>Checksums of the block files ("blocks/NNNNN.safetensors", see <see cref="Checksum"/>);
    /// null in a manifest written before checksums were recorded (its blocks are read unverified).</summary>
    public Dictionary<string, string>? Checksums { get; init; }

    public static FeatureStoreManifest For(IFeaturizer f, IDataset data, int blockSize) => new()
    {
        Method = f.Method, Settings = new Dictionary<string, string>(f.Settings), Models = f.ModelFingerprints.ToArray(),
        DataFingerprint = data.Fingerprint(), Count = data.Count, BlockSize = blockSize, Dim = f.Dim,
    };

    /// <summary>Throws, naming the first differing field, when a stored manifest does not describe
    /// the features this run would compute (library version aside).</summary>
    public void Require(FeatureStoreManifest expected, string path)
    {
        void Check(string field, object found, object want, string why = "")
        {
            if (!Equals(found, want))
                throw new InfluenceSharpException($"{path}: features were computed with {field} = {found}, but this run has {field} = {want}{why}");
        }
        Check("format", Format, expected.Format);
        // Older versions named some methods otherwise (tracin-fast for tracin-last): the same features.
        Check("method", MethodNames.Canonical(Method), MethodNames.Canonical(expected.Method));
        Check("models (count)", Models.Length, expected.Models.Length, " (another set of checkpoints)");
        for (int i = 0; i < Models.Length; i++)
            Check($"models[{i}]", Models[i], expected.Models[i], " (features from another checkpoint)");
        foreach (var key in Settings.Keys.Union(expected.Settings.Keys).OrderBy(k => k, StringComparer.Ordinal))
            Check($"settings.{key}", Settings.GetValueOrDefault(key, "(unset)"), expected.Settings.GetValueOrDefault(key, "(unset)"));
        Check("data_fingerprint", DataFingerprint, expected.DataFingerprint, " (features from other training data)");
        Check("count", Count, expected.Count);
        Check("block_size", BlockSize, expected.BlockSize);
        Check("dim", Dim, expected.Dim);
    }
}

/// <summary>One block of stored features: rows Start..Start+Count−1 of the training set.
/// Disposing it disposes its tensors.</summary>
public sealed class FeatureBlock : IDisposable
{
    public FeatureBlock(int index, int start, Dictionary<string, Tensor> tensors) { Index = index; Start = start; Tensors = tensors; }
    public int Index { get; }
    public int Start { get; }
    public int Count => (int)Features.shape[0];
    public Dictionary<string, Tensor> Tensors { get; }
    public Tensor Features => this["features"];
    public Tensor this[string name] => Tensors.TryGetValue(name, out var t) ? t
        : throw new InfluenceSharpException($"feature block {Index} has no tensor '{name}' (store written by another version?)");
    public void Dispose() { foreach (var t in Tensors.Values) t.Dispose(); }
}

/// <summary>Where a store keeps its blocks.</summary>
public enum StoreMode
{
    /// <summary>Blocks are files in a directory (manifest.json + blocks/NNNNN.safetensors), reused by
    /// later runs; an interrupted build resumes with the missing blocks.</summary>
    Directory,
    /// <summary>Blocks are kept in memory for the lifetime of the store.</summary>
    Memory,
    /// <summary>Nothing is kept: every read computes its block (one pass, streaming).</summary>
    Transient,
}

/// <summary>
/// Training-set features computed once, in blocks of <see cref="BlockSize"/> examples, and reused for
/// every query set. A block file is written atomically (temp file + rename), so its presence is its
/// completion flag: an interrupted build leaves only complete blocks, and the next build computes the
/// missing ones only. Shards (i/n) build disjoint sets of blocks as separate processes over a shared
/// directory. The manifest records the method, its settings, the model fingerprints, the data
/// fingerprint and the layout, and a store opened for other checkpoints or data is refused with the
/// differing field named. Scoring against a store is a GEMM per block.
/// </summary>
public sealed class FeatureStore : IDisposable
{
    public const string ManifestFile = "manifest.json";
    private readonly IFeaturizer featurizer;
    private readonly IDataset data;
    private readonly int batchSize;
    private readonly Dictionary<int, Dictionary<string, Tensor>> memory = new();
    private readonly Dictionary<string, Dictionary<string, Tensor>> memoryArtifacts = new();

    private FeatureStore(IFeaturizer featurizer, IDataset data, FeatureStoreManifest manifest, StoreMode mode, string? dir, int batchSize)
    {
        this.featurizer = featurizer; this.data = data; Manifest = manifest; Mode = mode; Directory = dir; this.batchSize = batchSize;
    }

    public FeatureStoreManifest Manifest { get; }
    public StoreMode Mode { get; }
    /// <summary>A complete directory store opened only to be read (<see cref="OpenReadOnly"/>): nothing
    /// is written to it, not even locks; derived artifacts are kept in memory.</summary>
    public bool ReadOnly { get; private init; }
    public string? Directory { get; }
    public int Count => Manifest.Count;
    public int BlockSize => Manifest.BlockSize;
    public int BlockCount => (Count + BlockSize - 1) / BlockSize;
    public IFeaturizer Featurizer => featurizer;

    /// <summary>Opens (or creates) the store of <paramref name="data"/>'s features. With a directory,
    /// an existing manifest must match (else an exception names the differing field). Without one, the
    /// blocks are kept in memory, or (transient) computed one batch at a time when read.</summary>
    public static FeatureStore Open(IFeaturizer featurizer, IDataset data, string? directory, int blockSize, int batchSize, bool keepInMemory = false)
    {
        if (blockSize < 1) throw new InfluenceSharpException($"--block-size {blockSize}: must be at least 1");
        if (batchSize < 1) throw new InfluenceSharpException($"--batch-size {batchSize}: must be at least 1");
        if (directory is null && !keepInMemory) blockSize = batchSize;     // streaming: one batch at a time
        var manifest = FeatureStoreManifest.For(featurizer, data, blockSize);
        if (directory is null)
            return new FeatureStore(featurizer, data, manifest, keepInMemory ? StoreMode.Memory : StoreMode.Transient, null, batchSize);
        System.IO.Directory.CreateDirectory(Path.Combine(directory, "blocks"));
        OutputLock.CleanStaleTemps(directory);
        OutputLock.CleanStaleTemps(Path.Combine(directory, "blocks"));
        string mpath = Path.Combine(directory, ManifestFile);
        using (OutputLock.Manifest(directory, "feature store"))
        {
            if (File.Exists(mpath)) Json.ReadFile<FeatureStoreManifest>(mpath).Require(manifest, mpath);
            else Json.WriteFile(mpath, manifest with { Checksums = new() });
        }
        return new FeatureStore(featurizer, data, manifest, StoreMode.Directory, directory, batchSize);
    }

    /// <summary>The block size of the store already in <paramref name="directory"/> (null when there is none).</summary>
    public static int? ExistingBlockSize(string directory)
    {
        string mpath = Path.Combine(directory, ManifestFile);
        return File.Exists(mpath) ? Json.ReadFile<FeatureStoreManifest>(mpath).BlockSize : null;
    }

    /// <summary>Opens an existing, complete directory store for reading only, writing nothing (no
    /// directory, manifest, lock or block is created). Returns null, with the reason in
    /// <paramref name="why"/>, when there is no such store, it was built for other settings, model or
    /// data, or some blocks are missing.</summary>
    public static FeatureStore? OpenReadOnly(IFeaturizer featurizer, IDataset data, string directory, int blockSize, int batchSize, out string why)
    {
        string mpath = Path.Combine(directory, ManifestFile);
        if (!File.Exists(mpath)) { why = $"no feature store in {directory}"; return null; }
        var manifest = FeatureStoreManifest.For(featurizer, data, blockSize);
        try { Json.ReadFile<FeatureStoreManifest>(mpath).Require(manifest, mpath); }
        catch (InfluenceSharpException e) { why = e.Message; return null; }
        var store = new FeatureStore(featurizer, data, manifest, StoreMode.Directory, directory, batchSize) { ReadOnly = true };
        var missing = store.Missing();
        if (missing.Count > 0) { why = $"{directory}: {missing.Count} of {store.BlockCount} blocks are not built (run build-store to finish it)"; return null; }
        why = "";
        return store;
    }

    public (int Start, int Count) Range(int block)
    {
        if (block < 0 || block >= BlockCount) throw new ArgumentOutOfRangeException(nameof(block));
        int start = block * BlockSize;
        return (start, Math.Min(BlockSize, Count - start));
    }

    static string BlockName(int block) => $"blocks/{block:D5}.safetensors";

    private Dictionary<string, string>? checksums;

    /// <summary>The checksum recorded for a block (null: the store's manifest predates checksums).
    /// Blocks written since the map was last read (by this or another process) are looked up again.</summary>
    private string? ExpectedChecksum(int block)
    {
        string mpath = Path.Combine(Directory!, ManifestFile);
        if (checksums is null || !checksums.ContainsKey(BlockName(block)))
        {
            checksums = ManifestChecksums.Read(mpath);
            if (checksums is null) return null;
        }
        return ManifestChecksums.Expected(checksums, BlockName(block), BlockPath(block), mpath);
    }

    public string BlockPath(int block) => Path.Combine(Directory ?? throw new InvalidOperationException("not a directory store"), "blocks", $"{block:D5}.safetensors");

    /// <summary>True when the block is stored (its file exists and is whole, or it is held in memory);
    /// a truncated block file counts as missing, so a build recomputes it.</summary>
    public bool Has(int block) => Mode switch
    {
        StoreMode.Directory => File.Exists(BlockPath(block)) && SafeTensors.IsWhole(BlockPath(block)),
        StoreMode.Memory => memory.ContainsKey(block),
        _ => false,
    };

    public bool IsComplete => Mode != StoreMode.Transient && Enumerable.Range(0, BlockCount).All(Has);

    /// <summary>Blocks of this shard that are not stored yet.</summary>
    public List<int> Missing(Shard? shard = null)
    {
        var sh = shard ?? Shard.All;
        return Enumerable.Range(0, BlockCount).Where(b => sh.Contains(b) && !Has(b)).ToList();
    }

    /// <summary>Computes and stores this shard's missing blocks; returns how many were computed.
    /// A transient store has nothing to build.</summary>
    /// <remarks>Locking (see <see cref="OutputLock"/>): a build without a shard locks the store
    /// directory as a whole; every block is written under its own lock (a shard's build, or a block
    /// computed on demand by <see cref="Get"/>), re-checking under the lock that it is still missing.</remarks>
    public int Build(Shard? shard = null, IProgress<ProgressUpdate>? progress = null, Profiler? profiler = null, string label = "train features")
    {
        if (Mode == StoreMode.Transient) return 0;
        if (ReadOnly)
        {
            // Complete when opened; a block lost since is an error, never rebuilt here.
            if (Missing(shard) is { Count: > 0 } gone) throw new InfluenceSharpException($"{Directory}: block {gone[0]} is missing (opened read-only); run build-store");
            return 0;
        }
        using var stage = Mode == StoreMode.Directory ? OutputLock.Stage(Directory!, "feature store", shard ?? Shard.All) : null;
        var todo = Missing(shard);
        if (todo.Count == 0) return 0;
        long total = todo.Sum(b => (long)Range(b).Count), done = 0;
        using var bar = ProgressReporter.Start(progress, label, total);
        foreach (var b in todo)
        {
            Store(b, profiler);
            done += Range(b).Count;
            bar?.Update(done);
        }
        return todo.Count;
    }

    /// <summary>Counts the blocks this instance has (re)computed: what is derived from the blocks
    /// (TRAK's kernel inverses) is stale when it changes.</summary>
    public int Version { get; private set; }

    private void Store(int b, Profiler? profiler)
    {
        if (ReadOnly) throw new InfluenceSharpException($"{Directory}: block {b} is missing (opened read-only); run build-store");
        using var blockLock = Mode == StoreMode.Directory ? OutputLock.Partition(Path.Combine(Directory!, "blocks"), "feature store", b) : null;
        if (Mode == StoreMode.Directory && Has(b)) return;   // another process stored it meanwhile
        var tensors = ComputeBlock(b, profiler);
        InvalidateArtifacts();
        Version++;
        if (Mode == StoreMode.Directory)
        {
            using (profiler?.Stage("Save Features"))
                SafeTensors.Save(BlockPath(b), tensors, new Dictionary<string, string> { ["method"] = Manifest.Method, ["block"] = b.ToString() },
                    sum => ManifestChecksums.RecordLocked(Directory!, ManifestFile, BlockName(b), sum, "feature store"));
            foreach (var t in tensors.Values) t.Dispose();
        }
        else memory[b] = tensors;
    }

    /// <summary>The block's tensors on the CPU (a copy the caller disposes): read from the store, or
    /// computed when it is not stored (and then kept, unless the store is transient).</summary>
    public FeatureBlock Get(int block, Profiler? profiler = null)
    {
        var (start, count) = Range(block);
        switch (Mode)
        {
            case StoreMode.Directory:
                if (!Has(block)) Store(block, profiler);
                using (profiler?.Stage("Load Features"))
                {
                    string mpath = Path.Combine(Directory!, ManifestFile);
                    SafeTensorsFile file;
                    try { file = SafeTensors.Load(BlockPath(block), ExpectedChecksum(block), mpath); }
                    catch (InfluenceSharpException)
                    {
                        // Another process may have written or rewritten the block since the map was
                        // read: read the map again (a second failure stands).
                        checksums = null;
                        file = SafeTensors.Load(BlockPath(block), ExpectedChecksum(block), mpath);
                    }
                    var tensors = new Dictionary<string, Tensor>(file.Tensors);
                    string? bad = !tensors.TryGetValue("features", out var f) || f.dim() != 2 || f.shape[0] != count || f.shape[1] != Manifest.Dim
                        ? $"block has the wrong shape ([{(f is null ? "" : string.Join(", ", f.shape))}], expected [{count}, {Manifest.Dim}])"
                        : tensors.Values.FirstOrDefault(t => t.dim() == 0 || t.shape[0] != count) is { } extra
                        ? $"block has a tensor of {(extra.dim() == 0 ? 0 : extra.shape[0])} rows, expected {count}"
                        : file.Metadata.TryGetValue("block", out var mb) && mb != block.ToString(System.Globalization.CultureInfo.InvariantCulture)
                        ? $"file holds block {mb}, not {block}"
                        : file.Metadata.TryGetValue("method", out var mm) && !MethodNames.Same(mm, Manifest.Method)
                        ? $"file holds {mm} features, not {Manifest.Method}"
                        : null;
                    if (bad is not null)
                    {
                        file.Dispose();
                        throw new InfluenceSharpException($"{BlockPath(block)}: {bad} (left over from another run, or copied from another block?); delete it to recompute");
                    }
                    return new FeatureBlock(block, start, tensors);
                }
            case StoreMode.Memory:
                if (!memory.ContainsKey(block)) Store(block, profiler);
                return new FeatureBlock(block, start, memory[block].ToDictionary(kv => kv.Key, kv => kv.Value.alias()));
            default:
                return new FeatureBlock(block, start, ComputeBlock(block, profiler));
        }
    }

    /// <summary>Every block in order (each disposed after the callback).</summary>
    public void ForEach(Action<FeatureBlock> action, Profiler? profiler = null)
    {
        for (int b = 0; b < BlockCount; b++)
        {
            using var blk = Get(b, profiler);
            action(blk);
        }
    }

    /// <summary>Features of any data set in batches, concatenated: [n, Dim] and extras (on the CPU).</summary>
    public static Dictionary<string, Tensor> ComputeAll(IFeaturizer featurizer, IDataset data, int batchSize, bool query)
    {
        // Each batch is copied into its rows of the result (allocated at the first batch), not
        // kept as a piece to concatenate: the pieces and their concatenation were twice the block.
        // The results belong to no dispose scope: the caller (a block, the memory store) owns them.
        var result = new Dictionary<string, Tensor>();
        var all = Enumerable.Range(0, data.Count).ToArray();
        try
        {
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var span = all.AsSpan(b, Math.Min(batchSize, data.Count - b));
                foreach (var (k, t) in featurizer.Compute(data, span, query))
                {
                    if (!result.TryGetValue(k, out var whole))
                    {
                        var shape = t.shape.ToArray();
                        shape[0] = data.Count;
                        result[k] = whole = torch.empty(shape, t.dtype).DetachFromDisposeScope();
                    }
                    whole.narrow(0, b, span.Length).copy_(t.detach());
                }
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    private Dictionary<string, Tensor> ComputeBlock(int block, Profiler? profiler)
    {
        var (start, count) = Range(block);
        using (profiler?.Stage("Compute Train Features"))
        {
            var sub = new IndexRange(data, start, count);
            return ComputeAll(featurizer, sub, batchSize, query: false);
        }
    }

    /// <summary>Where an artifact derived from the complete store (e.g. TRAK's kernels) is kept.</summary>
    public string ArtifactPath(string name) => Path.Combine(Directory ?? throw new InvalidOperationException("not a directory store"), "derived", name + ".safetensors");

    /// <summary>A derived artifact saved earlier (CPU copies the caller disposes), or null. Artifacts
    /// are deleted whenever a block is (re)computed, so they always describe the stored blocks.</summary>
    public Dictionary<string, Tensor>? LoadArtifact(string name)
    {
        switch (Mode)
        {
            case StoreMode.Directory:
                if (ReadOnly && memoryArtifacts.TryGetValue(name, out var kept)) return kept.ToDictionary(kv => kv.Key, kv => kv.Value.alias());
                if (!File.Exists(ArtifactPath(name))) return null;
                var f = SafeTensors.Load(ArtifactPath(name));
                return new Dictionary<string, Tensor>(f.Tensors);
            case StoreMode.Memory:
                return memoryArtifacts.TryGetValue(name, out var d) ? d.ToDictionary(kv => kv.Key, kv => kv.Value.alias()) : null;
            default:
                return null;
        }
    }

    public void SaveArtifact(string name, IReadOnlyDictionary<string, Tensor> tensors)
    {
        if (Mode == StoreMode.Directory && !ReadOnly) SafeTensors.Save(ArtifactPath(name), tensors, new Dictionary<string, string> { ["method"] = Manifest.Method });
        else if (Mode == StoreMode.Memory || ReadOnly)
            memoryArtifacts[name] = tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu().clone().DetachFromDisposeScope());
    }

    private void InvalidateArtifacts()
    {
        if (Mode == StoreMode.Directory)
        {
            string derived = Path.Combine(Directory!, "derived");
            if (System.IO.Directory.Exists(derived))
                foreach (var f in System.IO.Directory.GetFiles(derived, "*.safetensors")) File.Delete(f);
        }
        foreach (var d in memoryArtifacts.Values) foreach (var t in d.Values) t.Dispose();
        memoryArtifacts.Clear();
    }

    public void Dispose()
    {
        foreach (var d in memory.Values) foreach (var t in d.Values) t.Dispose();
        memory.Clear();
        foreach (var d in memoryArtifacts.Values) foreach (var t in d.Values) t.Dispose();
        memoryArtifacts.Clear();
    }

    /// <summary>A contiguous slice of a data set (block rows) with the parent's indexing.</summary>
    private sealed class IndexRange : IDataset
    {
        private readonly IDataset parent; private readonly int start;
        public IndexRange(IDataset parent, int start, int count) { this.parent = parent; this.start = start; Count = count; }
        public int Count { get; }
        public Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null) => parent.Inputs(Shift(indices), device);
        public Tensor Targets(ReadOnlySpan<int> indices, Device? device = null) => parent.Targets(Shift(indices), device);
        private int[] Shift(ReadOnlySpan<int> idx) { var r = new int[idx.Length]; for (int i = 0; i < r.Length; i++) r[i] = idx[i] + start; return r; }
        public string Fingerprint() => throw new NotSupportedException();
    }
}
