using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Unrolled;

/// <summary>Settings of <see cref="UnrolledAttribution"/>.</summary>
public sealed record UnrolledOptions
{
    /// <summary>Steps per recomputation segment; null: ⌈√T⌉ for a run of T steps (the memory of 2√T
    /// weight copies, one extra forward pass over the run).</summary>
    public int? SegmentSteps { get; init; }

    /// <summary>Queries differentiated together in one reverse pass (their adjoints share the
    /// recomputed trajectory and each step's forward and backward).</summary>
    public int QueryBatch { get; init; } = 32;

    /// <summary>Where the derivatives of each query set are kept (one file per query set), so that
    /// another evaluation of the same run and queries (another LDS subset size or protocol) reads them
    /// instead of repeating the reverse passes; null: not kept. The directory must belong to one run
    /// and one query measurement.</summary>
    public string? StoreDirectory { get; init; }
}

/// <summary>
/// Unrolled attribution: the exact derivative of a query's measurement f at the final weights with
/// respect to every training example's weight w_i (at w = 1), by reverse-mode differentiation through
/// the whole SGD run (momentum, weight decay, the learning-rate schedule, BatchNorm in training mode
/// with its running statistics). The run is replayed from its initial weights by its
/// <see cref="ReplayPlan"/>; the weights are kept every k steps and recomputed within a segment.
/// Reverse recursion per step t (batch B_t of b examples, rate η_t, momentum μ, weight decay λ),
/// from θ̄_T = ∇f(θ_T), v̄ = 0:  ṽ = v̄ − η_t θ̄_{t+1};  θ̄_t = θ̄_{t+1} + (H_t + λI) ṽ;  v̄ ← μ ṽ;
/// ∂f/∂w_i += ṽ · ∂g_t/∂w_i (= ṽ·∇ℓ_i(θ_t)/b without BatchNorm), where g_t is the gradient of the
/// step's weighted batch loss: both come from one double-backward of ṽ·g_t with respect to (θ_t, w).
/// Scores follow the library's sign: −∂f/∂w_i with f loss-like, so positive = helpful.
/// Cost per reverse pass: two forward replays of the run (checkpoints, then segments) and, per step,
/// one forward and backward with a graph plus one double-backward per query.
/// A weighted sum of queries Σ_q w_q f_q is one measurement: its derivatives take one reverse pass
/// (<see cref="WeightedScores"/>), however many queries it sums.
/// </summary>
public sealed class UnrolledAttribution : IAttributionMethod, IWeightedQueryAttribution, IDisposable
{
    private readonly Func<nn.Module<Tensor, Tensor>> initialModel;
    private readonly LabeledDataset train;
    private readonly IAttributionTask task;

    /// <param name="initialModel">Builds the model with the run's initial weights (frozen layers marked).</param>
    /// <param name="train">The run's training set.</param>
    /// <param name="plan">The run's steps.</param>
    /// <param name="task">The query measurement (default: classification loss).</param>
    /// <param name="options">Segment length and query batch.</param>
    /// <param name="progress">Receives the reverse passes' progress.</param>
    public UnrolledAttribution(Func<nn.Module<Tensor, Tensor>> initialModel, LabeledDataset train, ReplayPlan plan,
        IAttributionTask? task = null, UnrolledOptions? options = null, IProgress<ProgressUpdate>? progress = null)
    {
        Options = options ?? new UnrolledOptions();
        if (Options.QueryBatch < 1) throw new InfluenceSharpException($"unrolled query batch {Options.QueryBatch}: must be at least 1");
        if (Options.SegmentSteps is { } k && k < 1) throw new InfluenceSharpException($"unrolled segment {k}: must be at least 1 step");
        if (train.Count != plan.TrainCount) throw new InfluenceSharpException($"unrolled: the run trained on {plan.TrainCount} examples, the data has {train.Count}");
        this.initialModel = initialModel; this.train = train; Plan = plan;
        this.task = task ?? new ClassificationTask();
        Progress = progress;
    }

    /// <summary>The method for a run directory trained by <see cref="Trainer"/> with minibatch SGD,
    /// starting from its recorded initial weights (replay-init.safetensors; runs without it are rebuilt
    /// from their seed and init file).</summary>
    public static UnrolledAttribution FromRun(string runDir, LabeledDataset train, IAttributionTask? task = null,
        UnrolledOptions? options = null, IProgress<ProgressUpdate>? progress = null)
    {
        var record = RunRecord.TryRead(runDir) ?? throw new InfluenceSharpException($"{runDir}: no run.json (not a training run directory)");
        if (record.IncompleteReason(runDir) is { } why) throw new InfluenceSharpException($"{runDir}: unrolled needs a complete run: {why}");
        var o = record.Training;
        if (o.LbfgsTolerance is not null) throw new InfluenceSharpException($"{runDir}: unrolled differentiates minibatch SGD; this run was fitted by full-batch L-BFGS");
        if (record.DataFingerprint != train.Fingerprint())
            throw new InfluenceSharpException($"{runDir}: unrolled needs the run's own training data (its fingerprint differs)");
        string replayPath = Path.Combine(runDir, ReplayRecord.FileName);
        if (File.Exists(replayPath) && Formats.Json.ReadFile<ReplayRecord>(replayPath).Order is var order && order != ReplayRecord.CurrentOrder)
            throw new InfluenceSharpException($"{replayPath}: the run drew its data order as \"{order}\", this version replays \"{ReplayRecord.CurrentOrder}\"; train the run again to replay it");
        string initPath = Path.Combine(runDir, ReplayRecord.InitFileName);
        nn.Module<Tensor, Tensor> Initial()
        {
            torch.manual_seed(o.Seed);
            var m = record.Model.Create();
            if (File.Exists(initPath)) Checkpoint.LoadWeights(m, initPath);
            else if (o.InitFile is not null) InitWeights.Apply(m, o.InitFile, o.InitHash);
            InitWeights.Freeze(m, o.Freeze);
            return m;
        }
        return new UnrolledAttribution(Initial, train, ReplayPlan.For(o, train.Count), task, options, progress)
        {
            FinalWeights = Path.Combine(runDir, record.Checkpoints[^1]),
        };
    }

    public string Name => "unrolled";
    public UnrolledOptions Options { get; }
    public ReplayPlan Plan { get; }
    public IProgress<ProgressUpdate>? Progress { get; }

    /// <summary>The run's final weights file: when set, each reverse pass compares the replayed final
    /// weights with it (<see cref="ReplayDeviation"/>).</summary>
    public string? FinalWeights { get; init; }

    /// <summary>Largest absolute difference between the replayed final weights and
    /// <see cref="FinalWeights"/> in the last reverse pass (0: the replay is bit-identical; another
    /// thread count can make it differ by rounding); null before a pass or without the file.</summary>
    public double? ReplayDeviation { get; private set; }

    /// <summary>Reverse passes through the run made by this instance so far.</summary>
    public int ReversePasses { get; private set; }

    /// <summary>Steps per segment for this run.</summary>
    public int SegmentSteps => Options.SegmentSteps ?? Math.Max(1, (int)Math.Ceiling(Math.Sqrt(Plan.Steps)));

    /// <summary>∂f_q(θ_T)/∂w_i for every query q (rows) and training example i: float64 [n_query, n_train].</summary>
    public Tensor Derivatives(IDataset queries)
    {
        var rows = new List<Tensor>();
        for (int q0 = 0; q0 < queries.Count; q0 += Options.QueryBatch)
        {
            var idx = Enumerable.Range(q0, Math.Min(Options.QueryBatch, queries.Count - q0)).ToArray();
            rows.Add(Reverse(model => Measure(model, queries, idx), idx.Length, $"unrolled queries {q0 + 1}-{q0 + idx.Length}/{queries.Count}"));
        }
        var all = torch.cat(rows, 0);
        foreach (var r in rows) r.Dispose();
        return all;
    }

    /// <summary>∂F(θ_T)/∂w_i of the summed measurement F = Σ_q f_q of a query set, in one reverse pass: float64 [n_train].</summary>
    public Tensor DerivativesOfSum(IDataset queries)
    {
        var idx = Enumerable.Range(0, queries.Count).ToArray();
        using var d = Reverse(model => Measure(model, queries, idx).sum().unsqueeze(0), 1, "unrolled (summed queries)");
        return d[0].clone();
    }

    /// <summary>∂F(θ_T)/∂w_i of the weighted measurement F = Σ_q w_q f_q in one reverse pass (the adjoint
    /// is seeded with Σ_q w_q ∇f_q): float64 [n_train]. Queries with weight 0 are not measured.</summary>
    public Tensor WeightedDerivatives(IDataset queries, double[] weights)
    {
        if (weights.Length != queries.Count)
            throw new InfluenceSharpException($"unrolled: {weights.Length} weights for {queries.Count} queries");
        var active = Enumerable.Range(0, queries.Count).Where(q => weights[q] != 0).ToArray();
        if (active.Length == 0) return torch.zeros(train.Count, dtype: ScalarType.Float64);
        var wa = active.Select(q => weights[q]).ToArray();
        using var d = Reverse(model =>
        {
            var f = Measure(model, queries, active);
            var w = torch.tensor(wa, dtype: f.dtype);
            return f.mul(w).sum().unsqueeze(0);
        }, 1, $"unrolled (weighted sum of {active.Length} queries)");
        return d[0].clone();
    }

    /// <summary>s_i = −∂(Σ_q w_q f_q)/∂w_i = Σ_q w_q score(q, i) for the rows of <paramref name="train"/>
    /// (the run's training set or a view of some of its rows), in one reverse pass.</summary>
    public double[] WeightedScores(IDataset queries, double[] weights, IDataset train)
    {
        var columns = RunIndices(train);
        using var d = WeightedDerivatives(queries, weights);
        var all = d.data<double>().ToArray();
        return columns.Select(i => -all[i]).ToArray();
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var columns = RunIndices(train);
        // Callers that score the training set in partitions call once per partition: one reverse pass serves them all.
        string key = queries.Fingerprint();
        if (cached is null || cachedKey != key)
        {
            cached?.Dispose();
            using var d = StoredDerivatives(queries);
            cached = d.neg().to_type(ScalarType.Float32).DetachFromDisposeScope();
            cachedKey = key;
        }
        const int block = 4096;
        for (int b = 0; b < columns.Length; b += block)
        {
            using var scope = NewDisposeScope();
            var idx = torch.tensor(columns.AsSpan(b, Math.Min(block, columns.Length - b)).ToArray().Select(i => (long)i).ToArray());
            sink(b, cached.index_select(1, idx));
        }
    }

    private Tensor? cached;
    private string? cachedKey;

    /// <summary><see cref="Derivatives"/>, read from <see cref="UnrolledOptions.StoreDirectory"/> when
    /// a pass for the same queries, training set and steps has written them there (and written there
    /// otherwise).</summary>
    private Tensor StoredDerivatives(IDataset queries)
    {
        if (Options.StoreDirectory is not { } dir) return Derivatives(queries);
        string path = Path.Combine(dir, $"derivatives-{queries.Fingerprint()}.safetensors");
        var meta = new Dictionary<string, string>
        {
            ["format"] = "influencesharp-unrolled/1", ["train"] = train.Fingerprint(), ["queries"] = queries.Fingerprint(),
            ["steps"] = Plan.Steps.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        if (File.Exists(path))
        {
            using var file = SafeTensors.Load(path);
            bool same = meta.All(kv => file.Metadata.TryGetValue(kv.Key, out var v) && v == kv.Value)
                && file.Tensors.TryGetValue("derivatives", out var stored) && stored.dtype == ScalarType.Float64
                && stored.shape.SequenceEqual(new long[] { queries.Count, train.Count });
            if (same) return file["derivatives"].clone();
        }
        var d = Derivatives(queries);
        Directory.CreateDirectory(dir);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["derivatives"] = d }, meta);
        return d;
    }

    /// <summary>Frees the cached scores of the last query set.</summary>
    public void Dispose()
    {
        cached?.Dispose();
        cached = null;
    }

    /// <summary>−∂ℓ_i(θ_T)/∂w_i: how much up-weighting example i lowers its own final loss (one reverse
    /// pass per <see cref="UnrolledOptions.QueryBatch"/> examples). <paramref name="train"/> is the run's
    /// training set or a view of some of its rows.</summary>
    public double[] SelfInfluence(IDataset train)
    {
        var rows = RunIndices(train);
        var result = new double[rows.Length];
        var own = new ClassificationTask();
        for (int i0 = 0; i0 < rows.Length; i0 += Options.QueryBatch)
        {
            var idx = rows.AsSpan(i0, Math.Min(Options.QueryBatch, rows.Length - i0)).ToArray();
            using var d = Reverse(model => Measure(model, this.train, idx, own), idx.Length, $"unrolled self-influence {i0 + 1}-{i0 + idx.Length}/{rows.Length}");
            var flat = d.data<double>().ToArray();
            for (int q = 0; q < idx.Length; q++) result[i0 + q] = -flat[(long)q * this.train.Count + idx[q]];
        }
        return result;
    }

    /// <summary>The run's training-set indices of <paramref name="data"/>: the training set itself, or a
    /// view of some of its rows (a partition).</summary>
    private int[] RunIndices(IDataset data)
    {
        if (data.Count == train.Count && data.Fingerprint() == train.Fingerprint()) return Enumerable.Range(0, train.Count).ToArray();
        if (data is SubsetDataset s && s.Inner.Count == train.Count && s.Inner.Fingerprint() == train.Fingerprint()) return s.Indices.ToArray();
        throw new InfluenceSharpException($"unrolled: attributes to the run's own training set ({train.Count} examples); got another data set ({data.Count} examples)");
    }

    /// <summary>Per-query measurements [Q] of the model in eval mode.</summary>
    private Tensor Measure(nn.Module<Tensor, Tensor> model, IDataset data, int[] idx, IAttributionTask? measure = null)
    {
        var t = measure ?? task;
        var dtype = model.parameters().First().dtype;
        var x = data.Inputs(idx);
        if (x.is_floating_point() && x.dtype != dtype) x = x.to_type(dtype);
        var y = data.Targets(idx);
        var logits = model.forward(x);
        return torch.stack(Enumerable.Range(0, idx.Length).Select(q => t.QueryMeasure(logits.narrow(0, q, 1), y.narrow(0, q, 1))).ToArray());
    }

    /// <summary>One reverse pass through the run for Q measurements: float64 [Q, n_train] of ∂f_q/∂w_i.</summary>
    private Tensor Reverse(Func<nn.Module<Tensor, Tensor>, Tensor> measure, int count, string label)
    {
        ReversePasses++;
        using var model = initialModel();
        if (model.modules().Any(m => m is Dropout or Dropout2d or Dropout1d or Dropout3d or AlphaDropout))
            throw new InfluenceSharpException("unrolled: the model has dropout, whose random masks a replay does not reproduce");
        using var replay = new SgdReplay(model, train, Plan);
        var ps = replay.Trainable.Select(p => (Tensor)p.parameter).ToArray();
        var dtype = replay.Dtype;
        long steps = Plan.Steps;
        int k = SegmentSteps;
        using var bar = ProgressReporter.Start(Progress, label, 2 * steps, "steps");

        // Forward: the state at the start of every segment.
        var starts = new List<ReplayState>();
        try
        {
            for (long s = 0; s < steps; s += k)
            {
                starts.Add(replay.Save());
                replay.RunTo(Math.Min(s + k, steps));
                bar?.Update(replay.Step);
            }
            CompareFinal(model);

            // BatchNorm layers that train (frozen ones stay in eval mode): their running statistics are state too.
            model.train();
            InitWeights.FrozenBatchNormToEval(model);
            var tracked = model.modules().OfType<BatchNorm>().Where(bn => bn.training && bn.track_running_stats && bn.running_mean is not null).ToList();
            var trackedIndex = new Dictionary<BatchNorm, int>(ReferenceEqualityComparer.Instance);
            for (int i = 0; i < tracked.Count; i++) trackedIndex[tracked[i]] = i;

            // Adjoints at the final weights: ∇f_q with respect to the parameters and running statistics.
            var thetaBar = ps.Select(p => torch.zeros(new[] { (long)count }.Concat(p.shape).ToArray(), dtype: dtype)).ToArray();
            var vBar = ps.Select(p => torch.zeros(new[] { (long)count }.Concat(p.shape).ToArray(), dtype: dtype)).ToArray();
            var meanBar = tracked.Select(bn => torch.zeros(count, bn.running_mean!.shape[0], dtype: dtype)).ToArray();
            var varBar = tracked.Select(bn => torch.zeros(count, bn.running_var!.shape[0], dtype: dtype)).ToArray();
            var wBar = torch.zeros(count, train.Count, dtype: ScalarType.Float64);
            using var wbn = WeightedBatchNorm.Attach(model);
            FinalAdjoints(model, wbn, measure, count, ps, tracked, thetaBar, meanBar, varBar);
            if (wbn is not null) wbn.UpdateRunningStatistics = false;
            using var mu = Plan.Momentum.ToScalar();
            using var lambda = Plan.WeightDecay.ToScalar();
            for (int seg = starts.Count - 1; seg >= 0; seg--)
            {
                replay.Load(starts[seg]);
                long s0 = starts[seg].Step, end = Math.Min(s0 + k, steps);
                var thetas = new List<Tensor[]>();
                try
                {
                    for (long t = s0; t < end; t++)
                    {
                        using (no_grad()) thetas.Add(ps.Select(p => p.detach().clone().DetachFromDisposeScope()).ToArray());
                        replay.Next();
                    }
                    for (long t = end - 1; t >= s0; t--)
                    {
                        StepBack(model, wbn, ps, thetas[(int)(t - s0)], t, count, thetaBar, vBar, meanBar, varBar, tracked, trackedIndex, wBar, mu, lambda);
                        bar?.Update(steps + (steps - t));
                    }
                }
                finally { foreach (var th in thetas) foreach (var p in th) p.Dispose(); }
            }
            foreach (var a in thetaBar.Concat(vBar).Concat(meanBar).Concat(varBar)) a.Dispose();
            bar?.Complete();
            return wBar;
        }
        finally { foreach (var s in starts) s.Dispose(); }
    }

    private void CompareFinal(nn.Module<Tensor, Tensor> model)
    {
        if (FinalWeights is null || !File.Exists(FinalWeights)) return;
        using var file = SafeTensors.Load(FinalWeights);
        double max = 0;
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (file.Tensors.TryGetValue(name, out var saved) && saved.shape.SequenceEqual(p.shape))
                {
                    using var scope = NewDisposeScope();
                    max = Math.Max(max, (p.detach().to_type(ScalarType.Float64) - saved.to_type(ScalarType.Float64)).abs().max().item<double>());
                }
        ReplayDeviation = max;
    }

    private static void FinalAdjoints(nn.Module<Tensor, Tensor> model, WeightedBatchNorm? wbn, Func<nn.Module<Tensor, Tensor>, Tensor> measure, int count,
        Tensor[] ps, List<BatchNorm> tracked, Tensor[] thetaBar, Tensor[] meanBar, Tensor[] varBar)
    {
        model.eval();
        using var scope = NewDisposeScope();
        // The running statistics as leaves that require gradients (libtorch's batch norm takes none).
        var stats = new Dictionary<BatchNorm, (Tensor Mean, Tensor Var)>(ReferenceEqualityComparer.Instance);
        foreach (var bn in tracked)
            stats[bn] = (bn.running_mean!.detach().clone().requires_grad_(true), bn.running_var!.detach().clone().requires_grad_(true));
        if (wbn is not null) wbn.EvalStatistics = stats;
        try
        {
            var f = measure(model);
            var inputs = ps.Concat(tracked.SelectMany(bn => new[] { stats[bn].Mean, stats[bn].Var })).ToArray();
            for (int q = 0; q < count; q++)
            {
                var g = torch.autograd.grad(new[] { f[q] }, inputs, retain_graph: q < count - 1, allow_unused: true);
                using var noGrad = no_grad();
                for (int p = 0; p < ps.Length; p++) if (g[p] is { } gp && !gp.IsInvalid) thetaBar[p][q].copy_(gp);
                for (int b = 0; b < tracked.Count; b++)
                {
                    if (g[ps.Length + 2 * b] is { } gm && !gm.IsInvalid) meanBar[b][q].copy_(gm);
                    if (g[ps.Length + 2 * b + 1] is { } gv && !gv.IsInvalid) varBar[b][q].copy_(gv);
                }
            }
        }
        finally
        {
            if (wbn is not null) wbn.EvalStatistics = null;
        }
    }

    /// <summary>The reverse of step <paramref name="t"/> for every query (see the class summary).</summary>
    private void StepBack(nn.Module<Tensor, Tensor> model, WeightedBatchNorm? wbn, Tensor[] ps, Tensor[] theta, long t, int count,
        Tensor[] thetaBar, Tensor[] vBar, Tensor[] meanBar, Tensor[] varBar, List<BatchNorm> tracked,
        Dictionary<BatchNorm, int> trackedIndex, Tensor wBar, Scalar mu, Scalar lambda)
    {
        using var scope = NewDisposeScope();
        using (no_grad()) for (int p = 0; p < ps.Length; p++) ps[p].copy_(theta[p]);
        model.train();
        InitWeights.FrozenBatchNormToEval(model);
        var dtype = ps[0].dtype;
        var idx = Plan.Batch(t);
        var x = Plan.Inputs(train, t, dtype);
        var y = train.Targets(idx);
        var w = torch.ones(idx.Length, dtype: dtype).requires_grad_(true);
        Tensor logits;
        if (wbn is not null) { wbn.Weights = w; wbn.Recorded.Clear(); }
        try { logits = model.forward(x); }
        finally { if (wbn is not null) wbn.Weights = null; }
        using var inv = (1.0 / idx.Length).ToScalar();
        var loss = nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.None).mul(w).sum().mul(inv);
        var g = torch.autograd.grad(new[] { loss }, ps, retain_graph: true, create_graph: true, allow_unused: true);
        using var negLr = (-Plan.LearningRate(t)).ToScalar();
        // ṽ = v̄ − η_t θ̄_{t+1}: the adjoint of this step's momentum buffer (and of its gradient g_t).
        var vt = new Tensor[ps.Length];
        for (int p = 0; p < ps.Length; p++) vt[p] = vBar[p].add(thetaBar[p], negLr);
        var recorded = wbn?.Recorded.ToList() ?? new();
        var inputs = ps.Append(w).ToArray();
        var index = torch.tensor(idx.ToArray().Select(i => (long)i).ToArray());
        using var one = 1.0.ToScalar();
        for (int q = 0; q < count; q++)
        {
            var terms = new List<Tensor>();
            for (int p = 0; p < ps.Length; p++)
                if (g[p] is { } gp && !gp.IsInvalid) terms.Add(gp.mul(vt[p][q]).sum());
            foreach (var (bn, mean, variance) in recorded)
            {
                // Running statistics r ← (1 − m) r + m · batch statistic: the statistic's adjoint is m · r̄.
                if (!trackedIndex.TryGetValue(bn, out int b)) continue;
                using var m = bn.momentum!.Value.ToScalar();
                terms.Add(mean.mul(meanBar[b][q]).sum().mul(m));
                terms.Add(variance.mul(varBar[b][q]).sum().mul(m));
            }
            if (terms.Count == 0) continue;
            var s = torch.stack(terms.ToArray()).sum();
            var grads = torch.autograd.grad(new[] { s }, inputs, retain_graph: q < count - 1, allow_unused: true);
            using var noGrad = no_grad();
            for (int p = 0; p < ps.Length; p++)
                if (grads[p] is { } hv && !hv.IsInvalid) thetaBar[p][q].add_(hv);
            if (grads[^1] is { } gw && !gw.IsInvalid) wBar[q].index_add_(0, index, gw.detach().to_type(ScalarType.Float64), one);
        }
        using (no_grad())
        {
            for (int p = 0; p < ps.Length; p++)
            {
                thetaBar[p].add_(vt[p], lambda);    // weight decay: (H_t + λI) ṽ
                vBar[p].copy_(vt[p]).mul_(mu);      // v_{t+1} = μ v_t + g_t
            }
            for (int b = 0; b < tracked.Count; b++)
            {
                using var keep = (1 - tracked[b].momentum!.Value).ToScalar();
                meanBar[b].mul_(keep);
                varBar[b].mul_(keep);
            }
        }
    }
}
