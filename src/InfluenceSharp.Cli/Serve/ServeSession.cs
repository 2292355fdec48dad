using InfluenceSharp.Runs;
using System.Collections.Concurrent;
using System.Diagnostics;
using InfluenceSharp.Cli.Commands;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Serve;

/// <summary>What `influence serve` knows about its run: the data, the model's predictions, the
/// self-influence rankings (read from detect-mislabeled's output or computed in memory) and the
/// methods that answer proponent/opponent questions. Library work runs one request at a time.</summary>
internal sealed class ServeSession : IDisposable
{
    readonly SemaphoreSlim compute = new(1, 1);
    readonly ConcurrentDictionary<string, LabeledDataset> uploads = new();
    readonly ConcurrentQueue<string> uploadOrder = new();
    readonly MethodSettings settings;
    readonly Profiler profiler = new();
    readonly Dictionary<int, int> trueLabels = new();
    readonly Dictionary<string, Answerer> answerers = new(StringComparer.Ordinal);
    readonly List<IDisposable> owned = new();
    int uploadCount;
    DirectoryLock? readLock;

    public const int MaxUploadsKept = 32;

    ServeSession(Run run, ServeOptions options, MethodSettings settings)
    {
        Run = run; Options = options; this.settings = settings;
        Decisions = new DecisionsFile(run.Dir, run.Data.Train);
        if (run.Data.Corruption is { } rec) for (int t = 0; t < rec.Indices.Length; t++) trueLabels[rec.Indices[t]] = rec.TrueLabels[t];
    }

    public Run Run { get; }
    public ServeOptions Options { get; }
    public DecisionsFile Decisions { get; }
    public LabeledDataset Train => Run.Data.Train;
    public LabeledDataset Test => Run.Data.Test;
    public IReadOnlyList<string> ClassNames => Run.ClassNames;
    public int[] Predicted { get; private set; } = Array.Empty<int>();
    public int[] TestPredicted { get; private set; } = Array.Empty<int>();
    /// <summary>Self-influence per ranking method (its label), with the order by decreasing score.</summary>
    public Dictionary<string, (double[] Scores, int[] Order, string From)> Rankings { get; } = new(StringComparer.Ordinal);
    /// <summary>Image folders: the data set's files by their relative path (the only data files served).</summary>
    public Dictionary<string, string> DataFiles { get; } = new(StringComparer.Ordinal);
    public bool HasImages => Train is ImageDataset;

    /// <summary>Loads the run (a reader: the run's shared lock is held until the process ends),
    /// predicts every example and prepares the rankings.</summary>
    public static ServeSession Open(ServeOptions o, Action<string>? say)
    {
        // The explorer's own read lock, held while it serves: no writer replaces the run meanwhile.
        var readLock = Directory.Exists(o.RunDir) ? DirectoryLock.AcquireShared(Path.GetFullPath(o.RunDir), "serve: browsing the run") : null;
        Run run;
        try { run = RunContext.Load(o.RunDir, o.DataSpec); }
        catch { readLock?.Dispose(); throw; }
        var s = new ServeSession(run, o, new MethodSettings { UseStore = false }) { readLock = readLock };
        try
        {
            var sw = Stopwatch.StartNew();
            s.Predicted = run.PredictedTrainLabels();
            s.TestPredicted = Predict(run, run.Data.Test);
            say?.Invoke($"serve: {run.Data.Train.Count} training and {run.Data.Test.Count} test examples predicted in {sw.Elapsed.TotalSeconds:F1} s");
            s.LoadRankings(say);
            foreach (var set in new[] { run.Data.Train, run.Data.Test })
                if (set.Sources is { } src)
                    foreach (var e in src)
                        if (e.Kind == ExampleSourceKind.File && e.FullPath is { } full) s.DataFiles[e.Name!] = full;
        }
        catch { s.Dispose(); throw; }
        return s;
    }

    static int[] Predict(Run run, LabeledDataset data)
    {
        var model = run.Last.LoadModel();
        var pred = new int[data.Count];
        using var noGrad = no_grad();
        for (int b = 0; b < pred.Length; b += 1000)
        {
            using var scope = NewDisposeScope();
            var idx = Enumerable.Range(b, Math.Min(1000, pred.Length - b)).ToArray();
            model.forward(data.Inputs(idx)).argmax(1).to(ScalarType.Int32).data<int>().ToArray().CopyTo(pred, b);
        }
        return pred;
    }

    /// <summary>Rankings: every self_influence-M.npy of RUN_DIR/detect whose length is the training
    /// set's (or the --methods given); methods without one are computed in memory, nothing is written.</summary>
    void LoadRankings(Action<string>? say)
    {
        string detect = Path.Combine(Run.Dir, "detect");
        var found = Directory.Exists(detect)
            ? Directory.GetFiles(detect, "self_influence-*.npy").Select(f => Path.GetFileName(f)["self_influence-".Length..^".npy".Length]).OrderBy(m => m, StringComparer.Ordinal).ToList()
            : new List<string>();
        var wanted = Options.Methods is { Count: > 0 } m ? m.ToList() : found.Count > 0 ? found : MethodFactory.Defaults(MethodRole.Detection).Split(',').ToList();
        foreach (var name in wanted)
        {
            string file = Path.Combine(detect, $"self_influence-{name}.npy");
            if (File.Exists(file))
            {
                double[] self;
                using (var t = Npy.Read(file))
                using (var d = t.to_type(ScalarType.Float64).cpu())
                    self = d.data<double>().ToArray();
                if (self.Length == Train.Count) { Add(name, self, Path.GetRelativePath(Run.Dir, file)); continue; }
                say?.Invoke($"serve: {file}: {self.Length} scores for {Train.Count} training examples (another run's?); computing {name} again");
            }
            if (!MethodFactory.Names.Contains(name))
                throw new InfluenceSharpException($"--methods {name}: no {file} and not a method to compute ({string.Join(", ", MethodFactory.Names)})");
            var sw = Stopwatch.StartNew();
            var values = Method(name).SelfInfluence(Train);
            Add(name, values, "computed in memory");
            say?.Invoke($"serve: self-influence of {name} computed in {sw.Elapsed.TotalSeconds:F1} s (run `influence detect-mislabeled --run {Run.Dir} --methods {name}` to keep it)");
        }
    }

    void Add(string name, double[] self, string from)
    {
        var order = Enumerable.Range(0, self.Length).OrderByDescending(i => self[i]).ThenBy(i => i).ToArray();
        Rankings[name] = (self, order, from);
    }

    IAttributionMethod Method(string name) => MethodFactory.Create(name, Run, settings, profiler, quiet: true);

    /// <summary>The method that answers proponent questions for a ranking method's name: itself when
    /// it is a method name, else the first ranking that is.</summary>
    public string ExplainMethod(string? requested)
    {
        if (requested is not null && MethodFactory.Names.Contains(requested)) return requested;
        if (requested is not null && !Rankings.ContainsKey(requested))
            throw new InfluenceSharpException($"method '{requested}': not one of this explorer's ({string.Join(", ", Rankings.Keys.Concat(MethodFactory.Names).Distinct())})");
        return Rankings.Keys.FirstOrDefault(MethodFactory.Names.Contains) ?? Options.ExplainMethod;
    }

    public int? TrueLabel(int index) => trueLabels.TryGetValue(index, out var t) ? t : null;

    /// <summary>The data set a query comes from: "train", "test" or an upload id.</summary>
    public LabeledDataset QuerySet(string set) => set switch
    {
        "train" => Train, "test" => Test,
        _ => uploads.TryGetValue(set, out var u) ? u : throw new InfluenceSharpException($"query set '{set}': not train, test or a kept upload"),
    };

    /// <summary>What answers proponent questions for one method: an index of its feature store, the
    /// store itself, fitted factors, or (when the run has none of them) an exact streaming top-k.</summary>
    sealed record Answerer(IAttributionMethod Method, string Source, FeatureIndex? Index = null, int Probe = 0);

    /// <summary>The answerer of a method, chosen once from what the run already has on disk (all read,
    /// nothing written): an index of the method's feature store (approximate: the index's lists / 20
    /// probed, as `explain --index`), else the complete store (`build-store`, default settings), else
    /// factors fitted on the run's last checkpoint and training set (`fit-factors --out` inside the
    /// run), else the exact streaming top-k that computes the training set's features per query.</summary>
    Answerer Answering(string name)
    {
        if (answerers.TryGetValue(name, out var known)) return known;
        var notes = new List<string>();
        Answerer? a = null;
        var descriptor = AttributionMethods.Get(name);
        if (descriptor.IsFeatureMethod
            && MethodFactory.Create(name, Run, settings with { UseStore = true }, profiler, quiet: true) is FeatureMethod stored)
        {
            if (stored.UseExistingStore(Train, out string why))
            {
                string where = Path.GetRelativePath(Run.Dir, stored.StoreDirectory!);
                if (descriptor.IsIndexable && Directory.Exists(Path.Combine(stored.StoreDirectory!, "index")))
                {
                    try
                    {
                        var index = stored.OpenIndex(Train);
                        owned.Add(index);
                        int probe = Math.Max(1, index.Lists / 20);
                        a = new Answerer(stored, $"index of the feature store {where}/index (approximate: {probe} of {index.Lists} lists probed per query)", index, probe);
                    }
                    catch (InfluenceSharpException e) { notes.Add(e.Message); }
                }
                a ??= new Answerer(stored, $"feature store {where} (exact top-k over its stored features)");
            }
            else notes.Add(why);
        }
        if (a is null && descriptor is FactoredMethodDescriptor factored && FittedFactors(factored, notes) is { } f)
            a = new Answerer(f.Method, $"fitted factors {Path.GetRelativePath(Run.Dir, f.Dir)} (exact streaming top-k over the training set's gradients)");
        a ??= new Answerer(Method(name), $"exact streaming top-k over the training set (no feature store, index or fitted factors of {name} in the run" +
            (notes.Count > 0 ? ": " + string.Join("; ", notes) : "") + ")");
        return answerers[name] = a;
    }

    /// <summary>Factors fitted for this method on the run's last checkpoint and training set, in a
    /// folder of the run (fit-factors --out RUN_DIR/...; at most three levels down), as an influence
    /// function with the method's default damping; null when there are none.</summary>
    (IAttributionMethod Method, string Dir)? FittedFactors(FactoredMethodDescriptor d, List<string> notes)
    {
        if (settings.IfEpochs != "last") return null;
        var dirs = new List<string>();
        void Scan(string dir, int depth)
        {
            if (File.Exists(Path.Combine(dir, Factors.FactorsFile)) && File.Exists(Path.Combine(dir, Factors.ManifestFile))) dirs.Add(dir);
            if (depth == 3) return;
            foreach (var sub in Directory.GetDirectories(dir).Order(StringComparer.Ordinal))
                if (!Path.GetFileName(sub).StartsWith('.') && new DirectoryInfo(sub).LinkTarget is null) Scan(sub, depth + 1);
        }
        Scan(Run.Dir, 0);
        if (dirs.Count == 0) return null;
        var model = Run.Last.LoadModel();
        var all = TrackedLayer.Find(model, d.TracksLastLinearOnly ? null : settings.Layers);
        var layers = d.TracksLastLinearOnly ? all.Where(l => l.Type is LinearLayerType).TakeLast(1).ToList() : all;
        var shapes = FactorsManifest.ShapesOf(layers);
        string modelFp = ModelFingerprint.Of(model), dataFp = Train.Fingerprint();
        foreach (var dir in dirs)
        {
            FactorsManifest m;
            try { m = Formats.Json.ReadFile<FactorsManifest>(Path.Combine(dir, Factors.ManifestFile)); }
            catch (Exception e) when (e is InfluenceSharpException or System.Text.Json.JsonException or IOException) { notes.Add($"{dir}: unreadable factors manifest"); continue; }
            if (m.Strategy != d.Strategy || m.Fisher != settings.Fisher || !m.Layers.SequenceEqual(shapes)) continue;
            if (m.ModelFingerprint != modelFp || m.DataFingerprint != dataFp) { notes.Add($"{dir}: factors of another checkpoint or training set"); continue; }
            if (DirectoryLock.AcquireShared(dir, "serve: reading the factors") is { } held) owned.Add(held);
            var factors = Factors.Load(dir);
            owned.Add(factors);
            var so = new ScoreOptions { Damping = DampingDefaults.Factored(settings.Damping, Run.Last), TrainBatchSize = settings.TrainBatchSize };
            return (new InfluenceFunction(model, new ClassificationTask(settings.Measure), factors, so, profiler), dir);
        }
        return null;
    }

    /// <summary>Proponents and opponents of one query from the method's answerer (see
    /// <see cref="Answering"/>), and which source answered.</summary>
    public async Task<(TopKResult Result, string Method, string Source, double Seconds)> ExplainAsync(string set, int index, string? method, int k, CancellationToken ct)
    {
        var data = QuerySet(set);
        if (index < 0 || index >= data.Count) throw new InfluenceSharpException($"index {index}: outside the {set} set (0..{data.Count - 1})");
        string name = ExplainMethod(method);
        await compute.WaitAsync(ct);
        try
        {
            var sw = Stopwatch.StartNew();
            var queries = data.Subset(new[] { index });
            var a = Answering(name);
            TopKResult raw;
            if (a.Index is { } ix && a.Method is FeatureMethod fm) raw = fm.TopKIndexed(queries, Train, ix, k, a.Probe).Result;
            else
            {
                var topk = new StreamingTopK(1, k);
                a.Method.Pairwise(queries, Train, (off, block) => topk.Add(block, off));
                raw = topk.Result();
            }
            return (raw.WithStrictSigns(), name, a.Source, sw.Elapsed.TotalSeconds);
        }
        finally { compute.Release(); }
    }

    /// <summary>An uploaded image prepared as the run's training images are (as `explain
    /// --query-image` does), labelled with the model's prediction; kept in memory only.</summary>
    public async Task<(string Id, int Predicted)> AddUploadAsync(byte[] encoded, string name, CancellationToken ct)
    {
        await compute.WaitAsync(ct);
        try
        {
            var image = ExplainCommand.DecodeQueryImage(Run, encoded, name);
            var (q, _) = ExplainCommand.FromImageFile(Run, image, name, null);
            string id = $"upload{Interlocked.Increment(ref uploadCount)}";
            uploads[id] = q;
            uploadOrder.Enqueue(id);
            while (uploadOrder.Count > MaxUploadsKept && uploadOrder.TryDequeue(out var old)) uploads.TryRemove(old, out _);
            return (id, q.Labels[0]);
        }
        finally { compute.Release(); }
    }

    /// <summary>Example <paramref name="index"/> of a set as a PNG (null for data that are not images).</summary>
    public byte[]? Png(LabeledDataset data, int index)
    {
        return PngWriter.EncodeExample(data, index);
    }

    public void Dispose()
    {
        foreach (var m in MethodFactory.Built(Run)) MethodLifetime.Release(m);
        foreach (var o in owned) o.Dispose();
        compute.Dispose();
        readLock?.Dispose();
    }
}
