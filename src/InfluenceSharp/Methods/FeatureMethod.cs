using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Diagnostics;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>Settings shared by the methods that score with per-example features (TracIn, TRAK).</summary>
public abstract record FeatureRunOptions
{
    public int TrainBatchSize { get; init; } = 256;
    public int QueryBatchSize { get; init; } = 128;
    /// <summary>Directory of the training-feature store: features are computed once, saved in blocks,
    /// resumed after an interruption and reused by later query sets. Null: not saved (TracIn streams
    /// them; TRAK keeps them in memory, since its kernel needs the whole set first).</summary>
    public string? StoreDirectory { get; init; }
    /// <summary>Training examples per stored block (the unit of resume and of score output).</summary>
    public int BlockSize { get; init; } = 4096;
    /// <summary>Receives progress (examples done, rate); null = silent (the default). Not part of any manifest.</summary>
    public IProgress<ProgressUpdate>? Progress { get; init; }
}

/// <summary>
/// A method whose scores are computed from per-example features: training features come from a
/// <see cref="FeatureStore"/> (built once), query features are computed per call, and each block of
/// scores is a GEMM of the prepared query features with a block of training features.
/// </summary>
public abstract class FeatureMethod : IAttributionMethod, IDisposable
{
    private (string Fingerprint, FeatureStore Store)? cached;

    protected FeatureMethod(FeatureRunOptions options, Profiler? profiler)
    {
        RunOptions = options; Profiler = profiler ?? new Profiler();
        if (options.TrainBatchSize < 1) throw new InfluenceSharpException($"--batch-size {options.TrainBatchSize}: must be at least 1");
        if (options.QueryBatchSize < 1) throw new InfluenceSharpException($"--query-batch-size {options.QueryBatchSize}: must be at least 1");
        if (options.BlockSize < 1) throw new InfluenceSharpException($"--block-size {options.BlockSize}: must be at least 1");
    }

    public abstract string Name { get; }
    public abstract IFeaturizer Featurizer { get; }
    public Profiler Profiler { get; }
    protected FeatureRunOptions RunOptions { get; }
    /// <summary>The device scores are computed on (the models').</summary>
    protected abstract Device Device { get; }
    /// <summary>True when scoring needs every training block first (TRAK's kernel).</summary>
    protected virtual bool NeedsCompleteStore => false;

    /// <summary>Called with every data set before its features are computed or its store opened
    /// (features whose layout depends on the input shape fix it here).</summary>
    protected virtual void Bind(IDataset data) { }

    /// <summary>The batch size features are computed with (a method may lower the requested one to
    /// bound the memory of a batch's feature rows).</summary>
    protected virtual int BatchSize(int requested) => requested;

    /// <summary>Training examples per stored block (a method may lower the requested one so that a
    /// block of wide feature rows stays within its memory budget).</summary>
    protected virtual int StoreBlockSize(int requested) => requested;

    /// <summary>Called once the store is complete (when <see cref="NeedsCompleteStore"/>) before scoring.</summary>
    protected virtual void Prepare(FeatureStore store) { }
    /// <summary>Query features [n_q, Dim] (+ extras) → what <see cref="ScoreBlock"/> multiplies, on <see cref="Device"/>.</summary>
    protected abstract Tensor PrepareQueries(Dictionary<string, Tensor> queryFeatures);
    /// <summary>Scores [n_q, block] of prepared queries against one block of training features.</summary>
    protected abstract Tensor ScoreBlock(Tensor preparedQueries, FeatureBlock block);
    /// <summary>Self-influence [block] of one block of training features.</summary>
    protected abstract Tensor SelfBlock(FeatureBlock block);

    /// <summary>Opens the training-feature store for <paramref name="train"/> (directory, memory or
    /// streaming per the options); the same data set reuses the open store.</summary>
    public FeatureStore OpenStore(IDataset train)
    {
        string fp = train.Fingerprint();
        if (cached is { } c && c.Fingerprint == fp) return c.Store;
        cached?.Store.Dispose();
        Bind(train);
        var store = FeatureStore.Open(Featurizer, train, RunOptions.StoreDirectory, StoreBlockSize(RunOptions.BlockSize), BatchSize(RunOptions.TrainBatchSize), keepInMemory: NeedsCompleteStore);
        cached = (fp, store);
        return store;
    }

    /// <summary>Where the training-feature store is kept (null: not on disk).</summary>
    public string? StoreDirectory => RunOptions.StoreDirectory;

    /// <summary>Scores from the complete training-feature store already on disk, opened read-only:
    /// later calls read it and write nothing there. False, with the reason in <paramref name="why"/>,
    /// when there is none (or it is incomplete, or for other settings, checkpoints or data).</summary>
    public bool UseExistingStore(IDataset train, out string why)
    {
        if (RunOptions.StoreDirectory is not { } dir) { why = $"{Name}: no store directory in its settings"; return false; }
        Bind(train);
        var store = FeatureStore.OpenReadOnly(Featurizer, train, dir, StoreBlockSize(RunOptions.BlockSize), BatchSize(RunOptions.TrainBatchSize), out why);
        if (store is null) return false;
        cached?.Store.Dispose();
        cached = (train.Fingerprint(), store);
        return true;
    }

    /// <summary>Computes and stores the training features (this shard's missing blocks only). With a
    /// store directory this is the "fit" stage: run once, then score any number of query sets.
    /// Returns the number of blocks computed.</summary>
    public int BuildStore(IDataset train, Shard? shard = null)
    {
        var store = OpenStore(train);
        if (store.Mode == StoreMode.Transient) return 0;
        return store.Build(shard, RunOptions.Progress, Profiler, $"{Name} train features");
    }

    /// <summary>Query-side features of a data set [n, Dim] (+ extras), on the CPU.</summary>
    public Dictionary<string, Tensor> QueryFeatures(IDataset queries)
    {
        Bind(queries);
        return Profiler.Time("Compute Query Features", () => FeatureStore.ComputeAll(Featurizer, queries, BatchSize(RunOptions.QueryBatchSize), query: true));
    }

    /// <summary>Training-side features of a data set [n, Dim] (+ extras), on the CPU (small sets;
    /// large ones go through <see cref="BuildStore"/>).</summary>
    public Dictionary<string, Tensor> TrainFeatures(IDataset data)
    {
        Bind(data);
        return FeatureStore.ComputeAll(Featurizer, data, BatchSize(RunOptions.TrainBatchSize), query: false);
    }

    private FeatureStore Ready(IDataset train)
    {
        var store = OpenStore(train);
        if (store.Mode == StoreMode.Directory || NeedsCompleteStore) BuildStore(train);
        if (NeedsCompleteStore) Prepare(store);
        return store;
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var store = Ready(train);
        var qf = QueryFeatures(queries);
        Tensor prepared;
        try { prepared = PrepareQueries(qf); }
        finally { foreach (var t in qf.Values) t.Dispose(); }
        using (prepared)
        using (var bar = ProgressReporter.Start(RunOptions.Progress, $"{Name} pairwise scores", train.Count))
        using (Profiler.Stage("Compute Pairwise Score"))
        {
            for (int b = 0; b < store.BlockCount; b++)
            {
                using var scope = NewDisposeScope();
                using var blk = store.Get(b, Profiler);
                var scores = ScoreBlock(prepared, blk).to(ScalarType.Float32).cpu();
                sink(blk.Start, scores);
                bar?.Update(blk.Start + blk.Count);
            }
        }
    }

    public virtual double[] SelfInfluence(IDataset train)
    {
        var store = Ready(train);
        var result = new double[train.Count];
        using var bar = ProgressReporter.Start(RunOptions.Progress, $"{Name} self-influence", train.Count);
        using (Profiler.Stage("Compute Self-Influence Score"))
        {
            for (int b = 0; b < store.BlockCount; b++)
            {
                using var scope = NewDisposeScope();
                using var blk = store.Get(b, Profiler);
                SelfBlock(blk).to(ScalarType.Float64).cpu().data<double>().CopyTo(result, blk.Start);
                bar?.Update(blk.Start + blk.Count);
            }
        }
        return result;
    }

    /// <summary>True when score(q, z) is exactly the inner product of the prepared query
    /// (<see cref="PrepareQueries"/>) with <see cref="IndexRows"/>(z), so that a
    /// <see cref="FeatureIndex"/> over those rows finds the top-k.</summary>
    public virtual bool HasInnerProductForm => false;

    /// <summary>Rows [block, D] whose inner products with the prepared queries are the scores (only
    /// when <see cref="HasInnerProductForm"/>).</summary>
    protected virtual Tensor IndexRows(FeatureBlock block) => throw new NotSupportedException($"{Name} has no inner-product form");

    /// <summary>The query vectors matching <see cref="IndexRows"/>, from the prepared queries.</summary>
    protected virtual Tensor IndexQueryRows(Tensor prepared) => prepared;

    /// <summary>Width of <see cref="IndexRows"/>' rows.</summary>
    protected virtual long IndexDim => Featurizer.Dim;

    /// <summary>Where the index of the training-set store is kept: STORE/index.</summary>
    public string IndexDirectory(IDataset train)
    {
        if (!HasInnerProductForm)
            throw new InfluenceSharpException($"{Name}: scores are not inner products of stored rows, so there is no index (index-capable: {string.Join(", ", AttributionMethods.All.Where(d => d.IsIndexable).Select(d => d.Name))})");
        var store = OpenStore(train);
        if (store.Mode != StoreMode.Directory) throw new InfluenceSharpException($"{Name}: an index needs a feature store on disk (StoreDirectory)");
        return Path.Combine(store.Directory!, "index");
    }

    /// <summary>The index's rows: the complete store's blocks through <see cref="IndexRows"/>.</summary>
    public IndexSource IndexSourceFor(IDataset train)
    {
        IndexDirectory(train);
        var store = Ready(train);
        return new IndexSource(store.Count, IndexDim, store.BlockCount, b =>
        {
            using var blk = store.Get(b, Profiler);
            var rows = IndexRows(blk).to(ScalarType.Float32).cpu().clone();
            return (blk.Start, rows);
        }, FeatureIndex.StoreFingerprint(store), $"{Name} store {store.Directory}");
    }

    /// <summary>Builds (or resumes, or reuses when current) the index of the training-set store.</summary>
    public FeatureIndex BuildIndex(IDataset train, IndexOptions options) =>
        FeatureIndex.Build(IndexDirectory(train), IndexSourceFor(train), options with { Progress = options.Progress ?? RunOptions.Progress }, Profiler);

    /// <summary>Opens the index of the training-set store; refused when the store changed since it was built.</summary>
    public FeatureIndex OpenIndex(IDataset train)
    {
        string dir = IndexDirectory(train);
        var store = Ready(train);
        return FeatureIndex.Open(dir, FeatureIndex.StoreFingerprint(store));
    }

    /// <summary>The query vectors an index of the training-set store is searched with ([n_query, D],
    /// float32, CPU): their inner products with the index rows are the scores.</summary>
    public Tensor IndexQueries(IDataset queries, IDataset train)
    {
        IndexDirectory(train);
        Ready(train);
        var qf = QueryFeatures(queries);
        try
        {
            using var scope = NewDisposeScope();
            return IndexQueryRows(PrepareQueries(qf)).to(ScalarType.Float32).cpu().clone().DetachFromDisposeScope();
        }
        finally { foreach (var t in qf.Values) t.Dispose(); }
    }

    /// <summary>Approximate top-k proponents (largest scores) and opponents (smallest) of each query
    /// from an index of the training-set store, probing <paramref name="probe"/> lists per query and
    /// list; <c>CandidatesScored</c> counts the rows scored (both searches).</summary>
    public (TopKResult Result, long CandidatesScored) TopKIndexed(IDataset queries, IDataset train, FeatureIndex index, int k, int probe)
    {
        using var prepared = IndexQueries(queries, train);
        using (Profiler.Stage("Index Search"))
        {
            var hi = index.Search(prepared, k, probe, largest: true);
            var lo = index.Search(prepared, k, probe, largest: false);
            return (new TopKResult(hi.Indices, hi.Scores, lo.Indices, lo.Scores), hi.CandidatesScored + lo.CandidatesScored);
        }
    }

    public virtual void Dispose()
    {
        cached?.Store.Dispose();
        cached = null;
        GC.SuppressFinalize(this);
    }
}
