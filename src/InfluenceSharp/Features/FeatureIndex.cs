using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Features;

/// <summary>How a query chooses the lists it probes.</summary>
public enum IndexProbing
{
    /// <summary>k-means on the rows as they are; a query probes the lists whose centroids have the
    /// largest inner product with it (FAISS's IVF with METRIC_INNER_PRODUCT). The default: on real
    /// features (TracIn-last, TRAK of Fashion-MNIST) it reached a higher recall at the same fraction of
    /// rows scored than the reduction, with balanced lists (bench/README.md).</summary>
    InnerProduct,
    /// <summary>The MIPS→nearest-neighbour reduction (Bachrach et al. 2014): every row x becomes
    /// x̃ = [x, √(M² − ‖x‖²)] (M = the largest row norm), so all rows lie on one sphere and
    /// ‖q̃ − x̃‖² = ‖q‖² + M² − 2 q·x for q̃ = [q, 0]: the nearest row is the largest inner product.
    /// k-means runs on x̃ and a query probes the lists whose centroids are nearest to q̃ (q scaled to
    /// norm M, the radius of the rows' sphere; the inner-product ranking does not depend on q's scale).
    /// Better on the synthetic clustered rows of the bench; on real features the norm coordinate
    /// gathers the many small rows into a few very large lists.</summary>
    Reduction,
}

/// <summary>Settings of an inverted-file index (what changes the index).</summary>
public sealed record IndexOptions
{
    /// <summary>Number of inverted lists (k-means centroids); 0 = about 4√n, at most n.</summary>
    public int Lists { get; init; }
    /// <summary>Seeds the k-means sample and initial centroids: the same seed gives the same index.</summary>
    public int Seed { get; init; }
    /// <summary>Lloyd iterations of k-means.</summary>
    public int Iterations { get; init; } = 10;
    /// <summary>Rows per list in the k-means training sample (sample = Lists × this, at most n).</summary>
    public int SamplePerList { get; init; } = 64;
    public IndexProbing Probing { get; init; } = IndexProbing.InnerProduct;
    /// <summary>Receives progress; null = silent. Not part of the manifest.</summary>
    public IProgress<ProgressUpdate>? Progress { get; init; }

    /// <summary>The number of lists used for n rows.</summary>
    public int ListsFor(int n) => Lists > 0 ? Lists : Math.Max(1, Math.Min(n, (int)Math.Round(4 * Math.Sqrt(n))));
}

/// <summary>The rows an index is built over: <c>Count</c> rows of width <c>Dim</c> in
/// <c>BlockCount</c> blocks (block b returns its first row index and its rows [rows, Dim], which the
/// index disposes), and a fingerprint that changes whenever the rows may have changed.</summary>
public sealed record IndexSource(int Count, long Dim, int BlockCount, Func<int, (int Start, Tensor Rows)> Block, string Fingerprint, string Description);

/// <summary>index.json: what an index was built from and how. Written last: its presence marks a
/// complete index.</summary>
public sealed record IndexManifest
{
    public const string CurrentFormat = "influencesharp-ivf/1";
    public string Format { get; init; } = CurrentFormat;
    public required string Source { get; init; }
    public required string SourceFingerprint { get; init; }
    public required int Count { get; init; }
    public required long Dim { get; init; }
    public required int Lists { get; init; }
    public required int Seed { get; init; }
    public required int Iterations { get; init; }
    public required int SamplePerList { get; init; }
    public required string Probing { get; init; }
    /// <summary>Largest squared row norm (M² of the reduction).</summary>
    public required double MaxNormSquared { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
}

/// <summary>The k best rows of each query found by an index search, and how many rows were scored.</summary>
/// <param name="Indices">[n_query][≤k] row indices, best first (largest scores; for a search of the
/// smallest, smallest first).</param>
/// <param name="Scores">Their scores (inner products), same shape.</param>
/// <param name="CandidatesScored">Rows scored exactly, summed over the queries.</param>
public sealed record IndexHits(int[][] Indices, double[][] Scores, long CandidatesScored);

/// <summary>
/// An approximate maximum-inner-product index (IVF-Flat) over rows such as a feature store's: k-means
/// (Lloyd, GEMM assignments, on a seeded sample) partitions the rows into inverted lists; a query scores
/// the centroids, probes the best <c>probe</c> lists and scores their rows exactly (a GEMM per list),
/// returning the top k. Probing every list is the exact top-k. Rows are kept in list order in
/// <c>vectors.npy</c> [n, Dim], so a search reads only the probed lists.
/// <para>Files in the index directory: <c>centroids.safetensors</c>, <c>lists.safetensors</c> (offsets,
/// row ids in list order), <c>vectors.npy</c>, and <c>index.json</c> written last, after every other
/// file is complete, so an interrupted build never looks complete. The build is resumable: the
/// centroids and each block's list assignments are kept in <c>partials/</c> until the index is
/// complete. Opening an index whose source fingerprint differs from the rows now (a changed or rebuilt
/// store) is refused.</para>
/// </summary>
public sealed class FeatureIndex : IDisposable
{
    public const string ManifestFile = "index.json";
    private readonly Tensor centroids;     // [L, Dim(+1)] in the build space
    private readonly Tensor centroidHalfSq;   // [L] ½‖c̃‖²
    private readonly long[] offsets;       // [L + 1]
    private readonly int[] ids;            // [n] row ids in list order
    private readonly long dataOffset;

    private FeatureIndex(string dir, IndexManifest manifest, Tensor centroids, long[] offsets, int[] ids, long dataOffset)
    {
        Directory = dir; Manifest = manifest; this.offsets = offsets; this.ids = ids; this.dataOffset = dataOffset;
        this.centroids = centroids.DetachFromDisposeScope();
        centroidHalfSq = centroids.square().sum(1).mul(0.5).DetachFromDisposeScope();
    }

    public string Directory { get; }
    public IndexManifest Manifest { get; }
    public int Lists => Manifest.Lists;
    public int Count => Manifest.Count;
    public string VectorsPath => Path.Combine(Directory, "vectors.npy");
    /// <summary>Rows in each list.</summary>
    public int ListSize(int list) => (int)(offsets[list + 1] - offsets[list]);

    static IndexManifest ManifestFor(IndexSource source, IndexOptions o, int lists, double maxNormSq) => new()
    {
        Source = source.Description, SourceFingerprint = source.Fingerprint, Count = source.Count, Dim = source.Dim, Lists = lists, Seed = o.Seed,
        Iterations = o.Iterations, SamplePerList = o.SamplePerList, Probing = o.Probing.ToString().ToLowerInvariant(), MaxNormSquared = maxNormSq,
    };

    static string BuildKey(IndexSource s, IndexOptions o, int lists) =>
        $"{s.Description}|{s.Fingerprint}|{s.Count}|{s.Dim}|{lists}|{o.Seed}|{o.Iterations}|{o.SamplePerList}|{o.Probing}";

    /// <summary>Checks the settings against the rows; a bad one is an <see cref="InfluenceSharpException"/> naming it.</summary>
    public static void Validate(IndexOptions o, int count)
    {
        if (count < 1) throw new InfluenceSharpException("index: the store has no rows");
        if (o.Lists < 0) throw new InfluenceSharpException($"--lists {o.Lists}: must be at least 1 (or 0 for about 4√n)");
        if (o.Lists > count) throw new InfluenceSharpException($"--lists {o.Lists}: more lists than the {count} stored rows");
        if (o.Iterations < 1) throw new InfluenceSharpException($"index: iterations {o.Iterations} must be at least 1");
        if (o.SamplePerList < 1) throw new InfluenceSharpException($"index: sample per list {o.SamplePerList} must be at least 1");
        if (o.Seed < 0) throw new InfluenceSharpException($"--index-seed {o.Seed}: must be at least 0");
    }

    /// <summary>Builds the index of <paramref name="source"/> in <paramref name="dir"/> (or resumes an
    /// interrupted build with the same settings; returns the existing index when it is complete and
    /// current). Float32 throughout; deterministic for a fixed seed and thread count.</summary>
    public static FeatureIndex Build(string dir, IndexSource source, IndexOptions options, Profiler? profiler = null)
    {
        Validate(options, source.Count);
        using (NewDisposeScope()) BuildCore(dir, source, options, profiler);
        return Open(dir, source.Fingerprint);
    }

    static void BuildCore(string dir, IndexSource source, IndexOptions options, Profiler? profiler)
    {
        int n = source.Count, lists = options.ListsFor(n);
        bool reduce = options.Probing == IndexProbing.Reduction;
        System.IO.Directory.CreateDirectory(dir);
        using var whole = OutputLock.Stage(dir, "feature index", Shard.All);
        OutputLock.CleanStaleTemps(dir);
        string mpath = Path.Combine(dir, ManifestFile);
        if (File.Exists(mpath))
        {
            var old = Json.ReadFile<IndexManifest>(mpath);
            if (BuildKey(source, options, lists) == $"{old.Source}|{old.SourceFingerprint}|{old.Count}|{old.Dim}|{old.Lists}|{old.Seed}|{old.Iterations}|{old.SamplePerList}|{Enum.Parse<IndexProbing>(old.Probing, true)}")
                return;
            File.Delete(mpath);   // another index (settings or rows): never looks complete while rebuilt
        }
        string partials = Path.Combine(dir, "partials");
        string key = BuildKey(source, options, lists);
        string keyPath = Path.Combine(partials, "build-key.txt");
        if (System.IO.Directory.Exists(partials) && (!File.Exists(keyPath) || File.ReadAllText(keyPath) != key))
            System.IO.Directory.Delete(partials, recursive: true);
        System.IO.Directory.CreateDirectory(partials);
        OutputLock.CleanStaleTemps(partials);
        if (!File.Exists(keyPath)) AtomicFile.WriteAllText(keyPath, key);
        profiler ??= new Profiler();

        // 1. Norms of every row (M² of the reduction) and the seeded k-means sample.
        string kmPath = Path.Combine(partials, "kmeans.safetensors");
        Tensor cent; double maxNormSq;
        if (File.Exists(kmPath) && SafeTensors.IsWhole(kmPath))
        {
            using var f = SafeTensors.Load(kmPath);
            cent = f.Tensors["centroids"].clone();
            maxNormSq = f.Tensors["max_norm_sq"].to_type(ScalarType.Float64).item<double>();
        }
        else
        {
            int m = (int)Math.Min(n, (long)lists * options.SamplePerList);
            var gen = new TorchSharp.torch.Generator((ulong)options.Seed);
            var perm = randperm(n, generator: gen).narrow(0, 0, m);
            var sampleIdx = perm.sort().Values;
            long[] si = sampleIdx.data<long>().ToArray();
            var sample = empty(m, source.Dim);
            maxNormSq = 0;
            int taken = 0;
            using (profiler.Stage("Index: Sample Rows"))
            using (var bar = ProgressReporter.Start(options.Progress, "index: norms and sample", n))
            {
                for (int b = 0; b < source.BlockCount; b++)
                {
                    using var scope = NewDisposeScope();
                    var (start, rows) = source.Block(b);
                    rows = rows.to_type(ScalarType.Float32);
                    int cnt = (int)rows.shape[0];
                    maxNormSq = Math.Max(maxNormSq, rows.square().sum(1).max().to_type(ScalarType.Float64).item<double>());
                    int lo = taken;
                    while (taken < m && si[taken] < start + cnt) taken++;
                    if (taken > lo)
                    {
                        var local = tensor(si[lo..taken].Select(i => i - start).ToArray());
                        sample.narrow(0, lo, taken - lo).copy_(rows.index_select(0, local));
                    }
                    bar?.Update(start + cnt);
                }
            }
            if (taken != m) throw new InfluenceSharpException($"index: the source's blocks cover fewer rows than its count {n}");
            using (profiler.Stage("Index: k-means"))
            {
                var x = reduce ? Augment(sample, maxNormSq) : sample;
                cent = KMeans(x, lists, options.Iterations, gen, options.Progress);
            }
            SafeTensors.Save(kmPath, new Dictionary<string, Tensor> { ["centroids"] = cent, ["max_norm_sq"] = tensor(maxNormSq) });
        }

        // 2. Every row's list (nearest centroid in the build space), one saved partial per block.
        var halfSq = cent.square().sum(1).mul(0.5);
        var assign = new long[n];
        using (profiler.Stage("Index: Assign Rows"))
        using (var bar = ProgressReporter.Start(options.Progress, "index: assign rows", n))
        {
            for (int b = 0; b < source.BlockCount; b++)
            {
                using var scope = NewDisposeScope();
                string ap = Path.Combine(partials, $"assign-{b:D5}.safetensors");
                Tensor a; int start;
                if (File.Exists(ap) && SafeTensors.IsWhole(ap))
                {
                    using var f = SafeTensors.Load(ap);
                    a = f.Tensors["list"].clone(); start = int.Parse(f.Metadata["start"], System.Globalization.CultureInfo.InvariantCulture);
                }
                else
                {
                    (start, var rows) = source.Block(b);
                    rows = rows.to_type(ScalarType.Float32);
                    a = Nearest(reduce ? Augment(rows, maxNormSq) : rows, cent, halfSq);
                    SafeTensors.Save(ap, new Dictionary<string, Tensor> { ["list"] = a }, new Dictionary<string, string> { ["start"] = start.ToString(System.Globalization.CultureInfo.InvariantCulture) });
                }
                a.data<long>().CopyTo(assign.AsSpan(start, (int)a.shape[0]));
                bar?.Update(start + a.shape[0]);
            }
        }

        // 3. Lists: row ids sorted by list (stable: ascending ids within a list), rows written in that order.
        var order = Enumerable.Range(0, n).ToArray();
        var keys = assign.ToArray();
        Array.Sort(keys, order);   // introsort is not stable: re-sort ids within each list below
        var offs = new long[lists + 1];
        foreach (var l in assign) offs[l + 1]++;
        for (int l = 0; l < lists; l++) offs[l + 1] += offs[l];
        for (int l = 0; l < lists; l++) Array.Sort(order, (int)offs[l], (int)(offs[l + 1] - offs[l]));
        var position = new long[n];
        for (int p = 0; p < n; p++) position[order[p]] = p;
        using (profiler.Stage("Index: Write Lists"))
            WriteVectors(Path.Combine(dir, "vectors.npy"), source, position, options.Progress);
        SafeTensors.Save(Path.Combine(dir, "centroids.safetensors"), new Dictionary<string, Tensor> { ["centroids"] = cent });
        SafeTensors.Save(Path.Combine(dir, "lists.safetensors"), new Dictionary<string, Tensor>
        {
            ["offsets"] = tensor(offs), ["ids"] = tensor(order),
        });
        Json.WriteFile(mpath, ManifestFor(source, options, lists, maxNormSq));
        System.IO.Directory.Delete(partials, recursive: true);
    }

    /// <summary>Writes the rows in list order ([n, Dim] float32 .npy) to a temp file, renamed when whole.</summary>
    static void WriteVectors(string path, IndexSource source, long[] position, IProgress<ProgressUpdate>? progress)
    {
        long dim = source.Dim;
        byte[] header = Npy.Header(NpyDtype.Float32, new[] { (long)source.Count, dim });
        string tmp = Path.Combine(Path.GetDirectoryName(path)!, $".{Path.GetFileName(path)}.partial-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16))
            {
                fs.Write(header);
                fs.SetLength(header.Length + source.Count * dim * 4);
                using var bar = ProgressReporter.Start(progress, "index: write rows", source.Count);
                for (int b = 0; b < source.BlockCount; b++)
                {
                    using var scope = NewDisposeScope();
                    var (start, rows) = source.Block(b);
                    var c = rows.to_type(ScalarType.Float32).contiguous();
                    var span = MemoryMarshal.Cast<byte, float>(c.bytes);
                    int cnt = (int)c.shape[0];
                    for (int r = 0; r < cnt; r++)
                        RandomAccess.Write(fs.SafeFileHandle, MemoryMarshal.AsBytes(span.Slice((int)(r * dim), (int)dim)), header.Length + position[start + r] * dim * 4);
                    bar?.Update(start + cnt);
                }
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>[x, √(M² − ‖x‖²)]: every row on the sphere of radius M.</summary>
    static Tensor Augment(Tensor x, double maxNormSq)
    {
        using var m2 = maxNormSq.ToScalar();
        using var zero = 0.0.ToScalar();
        var extra = (m2 - x.square().sum(1)).clamp_min(zero).sqrt();
        return cat(new[] { x, extra.unsqueeze(1) }, 1);
    }

    /// <summary>Nearest centroid per row: argmax x·c − ½‖c‖², by GEMMs over chunks of rows.</summary>
    static Tensor Nearest(Tensor x, Tensor c, Tensor halfSq)
    {
        long n = x.shape[0];
        const long chunk = 8192;
        var result = empty(n, dtype: ScalarType.Int64);
        for (long s = 0; s < n; s += chunk)
        {
            using var scope = NewDisposeScope();
            long len = Math.Min(chunk, n - s);
            result.narrow(0, s, len).copy_(x.narrow(0, s, len).matmul(c.mT).sub_(halfSq).argmax(1));
        }
        return result;
    }

    /// <summary>Lloyd's k-means: initial centroids = k distinct sample rows (seeded); an emptied list
    /// takes the row farthest from its centroid.</summary>
    static Tensor KMeans(Tensor x, int k, int iterations, TorchSharp.torch.Generator gen, IProgress<ProgressUpdate>? progress)
    {
        long m = x.shape[0];
        var c = x.index_select(0, randperm(m, generator: gen).narrow(0, 0, k)).clone();
        using var bar = ProgressReporter.Start(progress, "index: k-means iterations", iterations);
        for (int it = 0; it < iterations; it++)
        {
            using var scope = NewDisposeScope();
            var halfSq = c.square().sum(1).mul(0.5);
            var a = Nearest(x, c, halfSq);
            using var one = 1.0.ToScalar();
            var sums = zeros(k, x.shape[1]).index_add_(0, a, x, one);
            var counts = bincount(a, minlength: k).to_type(ScalarType.Float32);
            var empty = counts.eq(0);
            var next = sums / counts.clamp_min(1).unsqueeze(1);
            long nEmpty = empty.sum().item<long>();
            if (nEmpty > 0)
            {
                // Distances of every row to its centroid; the farthest rows re-seed the empty lists.
                var d = (x - c.index_select(0, a)).square().sum(1);
                var far = d.topk((int)Math.Min(nEmpty, m)).indexes;
                var emptyIdx = empty.nonzero().squeeze(1);
                next.index_copy_(0, emptyIdx.narrow(0, 0, far.shape[0]), x.index_select(0, far));
            }
            c.copy_(next);
            bar?.Update(it + 1);
        }
        return c;
    }

    /// <summary>Opens a complete index, refusing it when its rows' fingerprint is not
    /// <paramref name="expectedFingerprint"/> (the store changed since it was built).</summary>
    public static FeatureIndex Open(string dir, string expectedFingerprint)
    {
        string mpath = Path.Combine(dir, ManifestFile);
        if (!File.Exists(mpath))
            throw new InfluenceSharpException(System.IO.Directory.Exists(Path.Combine(dir, "partials"))
                ? $"{dir}: the index build did not finish (no {ManifestFile}); run the index build again to resume it"
                : $"{dir}: no index (build it first: influence index build)");
        var manifest = Json.ReadFile<IndexManifest>(mpath);
        if (manifest.Format != IndexManifest.CurrentFormat)
            throw new InfluenceSharpException($"{mpath}: index format {manifest.Format} is not supported by this version; rebuild the index");
        if (manifest.SourceFingerprint != expectedFingerprint)
            throw new InfluenceSharpException($"{mpath}: the index is stale: it was built from {manifest.Source} with fingerprint {manifest.SourceFingerprint}, " +
                $"but the store's fingerprint is now {expectedFingerprint} (blocks recomputed or the store rebuilt); rebuild it with influence index build");
        using var cf = SafeTensors.Load(Path.Combine(dir, "centroids.safetensors"));
        using var lf = SafeTensors.Load(Path.Combine(dir, "lists.safetensors"));
        var cent = cf.Tensors["centroids"].clone();
        long[] offs = lf.Tensors["offsets"].data<long>().ToArray();
        int[] idArr = lf.Tensors["ids"].data<int>().ToArray();
        var h = Npy.ReadHeader(Path.Combine(dir, "vectors.npy"));
        bool reduce = manifest.Probing == "reduction";
        if (h.Dtype != NpyDtype.Float32 || h.Shape.Length != 2 || h.Shape[0] != manifest.Count || h.Shape[1] != manifest.Dim
            || cent.shape[0] != manifest.Lists || cent.shape[1] != manifest.Dim + (reduce ? 1 : 0)
            || offs.Length != manifest.Lists + 1 || offs[^1] != manifest.Count || idArr.Length != manifest.Count)
            throw new InfluenceSharpException($"{dir}: index files do not match {ManifestFile} (copied from another index?); rebuild it");
        return new FeatureIndex(dir, manifest, cent, offs, idArr, h.DataOffset);
    }

    /// <summary>The top <paramref name="k"/> rows of each query (rows of <paramref name="queries"/>
    /// [n_query, Dim]) by inner product, from the <paramref name="probe"/> lists each query ranks
    /// first; <paramref name="largest"/> = false finds the smallest inner products (the search of −q).
    /// Ties are broken by the lower row index, as the exact streaming top-k of the scores does.</summary>
    public IndexHits Search(Tensor queries, int k, int probe, bool largest = true)
    {
        if (k < 1) throw new InfluenceSharpException($"--top {k}: must be at least 1");
        if (probe < 1 || probe > Lists) throw new InfluenceSharpException($"--probe {probe}: must be between 1 and the index's {Lists} lists");
        if (queries.dim() != 2 || queries.shape[1] != Manifest.Dim)
            throw new InfluenceSharpException($"index search: queries of shape [{string.Join(", ", queries.shape)}] are not [n, {Manifest.Dim}]");
        using var scope = NewDisposeScope();
        var q = queries.detach().cpu().to_type(ScalarType.Float32);
        if (!largest) q = q.neg();
        int nq = (int)q.shape[0];
        long dim = Manifest.Dim;
        // Which lists each query probes.
        Tensor rank;
        if (Manifest.Probing == "reduction")
        {
            // q̃ = [q · M/‖q‖, 0]: nearest centroid = largest q̃·c̃ − ½‖c̃‖².
            using var mScalar = Math.Sqrt(Manifest.MaxNormSquared).ToScalar();
            var norms = q.norm(1, true, 2).clamp_min(1e-30);
            var qs = q / norms * mScalar;
            rank = qs.matmul(centroids.narrow(1, 0, dim).mT) - centroidHalfSq;
        }
        else rank = q.matmul(centroids.mT);
        var probed = rank.topk(probe, 1).indexes.data<long>().ToArray();
        var byList = new Dictionary<int, List<int>>();
        for (int i = 0; i < nq; i++)
            for (int j = 0; j < probe; j++)
            {
                int l = (int)probed[i * probe + j];
                if (!byList.TryGetValue(l, out var lst)) byList[l] = lst = new List<int>();
                lst.Add(i);
            }
        // Each query's candidates (scores and row ids), sized by the lists it probes.
        var candScores = new float[nq][];
        var candIds = new int[nq][];
        var filled = new int[nq];
        for (int i = 0; i < nq; i++)
        {
            long cap = 0;
            for (int j = 0; j < probe; j++) cap += ListSize((int)probed[i * probe + j]);
            candScores[i] = new float[cap]; candIds[i] = new int[cap];
        }
        long scored = 0;
        using (var fs = new FileStream(VectorsPath, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.RandomAccess))
        {
            foreach (var l in byList.Keys.Order())
            {
                int size = ListSize(l);
                if (size == 0) continue;
                using var inner = NewDisposeScope();
                var buf = new float[size * dim];
                RandomAccess.Read(fs.SafeFileHandle, MemoryMarshal.AsBytes(buf.AsSpan()), dataOffset + offsets[l] * dim * 4);
                var v = tensor(buf, new long[] { size, dim });
                var who = byList[l];
                var s = q.index_select(0, tensor(who.Select(i => (long)i).ToArray())).matmul(v.mT).contiguous();
                var sv = MemoryMarshal.Cast<byte, float>(s.bytes);
                var listIds = ids.AsSpan((int)offsets[l], size);
                for (int r = 0; r < who.Count; r++)
                {
                    int qi = who[r];
                    sv.Slice(r * size, size).CopyTo(candScores[qi].AsSpan(filled[qi]));
                    listIds.CopyTo(candIds[qi].AsSpan(filled[qi]));
                    filled[qi] += size;
                    scored += size;
                }
            }
        }
        var outIdx = new int[nq][]; var outSc = new double[nq][];
        for (int i = 0; i < nq; i++)
        {
            var sc = candScores[i]; var id = candIds[i];
            // Keep the candidates at or above the k-th largest score (ties included), then order
            // them by score, ties by the lower row index.
            float threshold = float.NegativeInfinity;
            if (sc.Length > k)
            {
                using var t = tensor(sc);
                using var top = t.topk(k).values;
                threshold = top[k - 1].item<float>();
            }
            var keep = Enumerable.Range(0, sc.Length).Where(j => sc[j] >= threshold).ToArray();
            Array.Sort(keep, (a, b) => sc[a] != sc[b] ? sc[b].CompareTo(sc[a]) : id[a].CompareTo(id[b]));
            int take = Math.Min(k, keep.Length);
            outIdx[i] = keep.Take(take).Select(o => id[o]).ToArray();
            outSc[i] = keep.Take(take).Select(o => largest ? (double)sc[o] : -(double)sc[o]).ToArray();
        }
        return new IndexHits(outIdx, outSc, scored);
    }

    /// <summary>A fingerprint of a complete directory store that changes when any block is rewritten:
    /// SHA-256 of its manifest and of every block file's name, length and modification time.</summary>
    public static string StoreFingerprint(FeatureStore store)
    {
        if (store.Mode != StoreMode.Directory) throw new InfluenceSharpException("an index needs a feature store on disk (a store directory)");
        if (!store.IsComplete) throw new InfluenceSharpException($"{store.Directory}: the feature store is not complete ({store.Missing().Count} blocks missing); build it first");
        var sb = new StringBuilder();
        sb.Append(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(Path.Combine(store.Directory!, FeatureStore.ManifestFile))))).Append('\n');
        for (int b = 0; b < store.BlockCount; b++)
        {
            var fi = new FileInfo(store.BlockPath(b));
            sb.Append(fi.Name).Append(' ').Append(fi.Length).Append(' ').Append(fi.LastWriteTimeUtc.Ticks).Append('\n');
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()))).ToLowerInvariant()[..32];
    }

    public void Dispose()
    {
        centroids.Dispose();
        centroidHalfSq.Dispose();
    }
}
