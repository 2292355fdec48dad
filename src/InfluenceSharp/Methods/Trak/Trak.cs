using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Gradients;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods.InfluenceFunctions;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Trak;

/// <summary>What the kernel solve did for one model. MaxEigenvalue: from the eigendecomposition (Eigh);
/// a power-iteration estimate, at most the true value, when λ = 0 took the Cholesky shortcut; NaN for
/// a Cholesky solve at λ &gt; 0.</summary>
public sealed record KernelDiagnostics(int Model, KernelSolver Solver, long Rank, long Dim, double MaxEigenvalue, double Scale);

/// <summary>
/// TRAK (Park et al. 2023). Per model m: φ_m(z) = P_mᵀ ∇θ f(z) / √p with f the task's model output
/// (<see cref="IAttributionTask.ModelOutput"/>, the margin by default), P_m a seeded
/// projection (k = 2048 by default) and p the number of projected parameters; Φ_m = training features;
/// Q_m(z) = the task's out-to-loss weight (1 − p_y(z) by default). score(q, z) = mean_m[φ_m(q)ᵀ (Φ_mᵀΦ_m + λI)⁻¹ φ_m(z)] · mean_m Q_m(z)
/// (positive = helpful); self-influence is the same with q = z. Training features and Q are stored
/// (<see cref="FeatureStore"/>, one row [φ_1 | … | φ_M] per example); kernels Φ_mᵀΦ_m are summed over
/// the blocks in float64 and saved beside them; queries are multiplied by the inverses once, so each
/// block of scores is one GEMM. Models are independently trained models or checkpoints.
/// </summary>
public sealed class Trak : FeatureMethod
{
    private readonly TrakFeaturizer featurizer;
    private Tensor[]? inverses;            // (Φ_mᵀΦ_m + λI)⁻¹ per model, float64, on the device
    private (FeatureStore Store, int Version)? preparedFor;

    public Trak(IReadOnlyList<nn.Module<Tensor, Tensor>> models, TrakOptions? options = null, IAttributionTask? task = null, Profiler? profiler = null)
        : base(options ?? new TrakOptions(), profiler)
    {
        Options = options ?? new TrakOptions();
        if (Options.Damping < 0 || double.IsNaN(Options.Damping)) throw new InfluenceSharpException($"--damping {Options.Damping}: must be >= 0");
        featurizer = new TrakFeaturizer(models, Options, task ?? new ClassificationTask());
    }

    public override string Name => "trak";
    public TrakOptions Options { get; }
    public override IFeaturizer Featurizer => featurizer;
    public IReadOnlyList<TrackedLayer> Layers => featurizer.Layers;
    public int ModelCount => featurizer.ModelCount;
    /// <summary>Projected dimension per model.</summary>
    public long ProjectedDim => featurizer.K;
    public IReadOnlyList<KernelDiagnostics> Diagnostics { get; private set; } = Array.Empty<KernelDiagnostics>();
    protected override Device Device => featurizer.Device;
    protected override bool NeedsCompleteStore => true;

    protected override void Prepare(FeatureStore store)
    {
        if (preparedFor is { } pf && ReferenceEquals(pf.Store, store) && pf.Version == store.Version && inverses is not null) return;
        int m = featurizer.ModelCount;
        long k = featurizer.K;
        if (UsesGram(store.Count))
        {
            PrepareByGram(store, m, k);
            return;
        }
        var loaded = store.LoadArtifact("kernels");
        Tensor[] kernels;
        if (loaded is not null && loaded.Count == m && Enumerable.Range(0, m).All(i => loaded.ContainsKey($"kernel{i}")))
            kernels = Enumerable.Range(0, m).Select(i => loaded[$"kernel{i}"]).ToArray();
        else
        {
            foreach (var t in loaded?.Values ?? Enumerable.Empty<Tensor>()) t.Dispose();
            kernels = Profiler.Time("Fit TRAK Kernel", () =>
            {
                var sums = Enumerable.Range(0, m).Select(_ => torch.zeros(k, k, dtype: ScalarType.Float64, device: Device).DetachFromDisposeScope()).ToArray();
                store.ForEach(blk =>
                {
                    long n = blk.Features.shape[0];
                    for (long r = 0; r < n; r += RowChunk)
                    {
                        using var scope = NewDisposeScope();
                        var phi = blk.Features.narrow(0, r, Math.Min(RowChunk, n - r)).to(Device).to(ScalarType.Float64);
                        for (int i = 0; i < m; i++) AddGram(sums[i], phi.narrow(1, i * k, k));
                    }
                }, Profiler);
                store.SaveArtifact("kernels", Enumerable.Range(0, m).ToDictionary(i => $"kernel{i}", i => sums[i]));
                return sums;
            });
        }
        if (inverses is not null) foreach (var t in inverses) t.Dispose();
        var diags = new List<KernelDiagnostics>();
        inverses = Profiler.Time("Invert TRAK Kernel", () => kernels.Select((kern, i) =>
        {
            var (w, d) = Invert(kern.to(Device), i, store.Count);
            diags.Add(d);
            return w;
        }).ToArray());
        foreach (var t in kernels) t.Dispose();
        Diagnostics = diags;
        preparedFor = (store, store.Version);
    }

    /// <summary>acc += pᵀp for p [n, k]: with k ≥ 1,024, as the upper triangle of 4 × 4 column blocks
    /// (10 GEMMs instead of 16), each mirrored below the diagonal; 2,048 dimensions, 5,000 float64
    /// rows: 0.39–0.40 s against 0.55–0.71 s for the full product (bench `trak-kernel`).</summary>
    internal static void AddGram(Tensor acc, Tensor p)
    {
        long k = p.shape[1];
        if (k < 1024) { acc.add_(p.mT.matmul(p)); return; }
        using var scope = NewDisposeScope();
        long w = (k + 3) / 4;
        for (long i = 0; i < k; i += w)
            for (long j = i; j < k; j += w)
            {
                long wi = Math.Min(w, k - i), wj = Math.Min(w, k - j);
                var blk = p.narrow(1, i, wi).mT.matmul(p.narrow(1, j, wj));
                acc.narrow(0, i, wi).narrow(1, j, wj).add_(blk);
                if (j != i) acc.narrow(0, j, wj).narrow(1, i, wi).add_(blk.mT);
            }
    }

    /// <summary>λ = 0 with fewer training examples than projected dimensions (n &lt; k, e.g. a few
    /// thousand images against ResNet-18's ~11,000 Kronecker dimensions): the pseudo-inverse of
    /// ΦᵀΦ (rank ≤ n) comes from the n × n Gram matrix, (ΦᵀΦ)⁺ = Φᵀ U Λ⁻² Uᵀ Φ with ΦΦᵀ = U Λ Uᵀ
    /// (n²k + nk² operations instead of the k × k eigendecomposition's ~k³; measured for n = 1,000,
    /// k = 10,880 on 2 shared cores: 13.5 s, against more than 6 minutes). Same eigenvalues, same
    /// cutoff, same result as Eigh.</summary>
    private bool UsesGram(int n) => Options.Damping == 0 && Options.Solver == KernelSolver.Auto && n < featurizer.K;

    private void PrepareByGram(FeatureStore store, int m, long k)
    {
        var phis = Enumerable.Range(0, m).Select(_ => new List<Tensor>()).ToArray();
        try
        {
            store.ForEach(blk =>
            {
                using var scope = NewDisposeScope();
                var phi = blk.Features.to(Device).to(ScalarType.Float64);
                for (int i = 0; i < m; i++) phis[i].Add(phi.narrow(1, i * k, k).contiguous().MoveToOuterDisposeScope());
            }, Profiler);
            if (inverses is not null) foreach (var t in inverses) t.Dispose();
            var diags = new List<KernelDiagnostics>();
            inverses = Profiler.Time("Invert TRAK Kernel", () => phis.Select((parts, i) =>
            {
                using var phi = torch.cat(parts, 0);
                var (w, d) = InvertByGram(phi, i, store.Count);
                diags.Add(d);
                return w;
            }).ToArray());
            Diagnostics = diags;
            preparedFor = (store, store.Version);
        }
        finally
        {
            foreach (var t in phis.SelectMany(p => p)) t.Dispose();
        }
    }

    private (Tensor Inverse, KernelDiagnostics Diag) InvertByGram(Tensor phi, int model, int n)
    {
        using var scope = NewDisposeScope();
        long k = phi.shape[1];
        var g = SymmetricEigen.Symmetrized(phi.matmul(phi.mT));
        var (e, u) = torch.linalg.eigh(g);
        double maxEig = e.max().item<double>();
        double tol = RankTolerance(n, k);
        using var cutoff = (tol * Math.Max(maxEig, 0)).ToScalar();
        var keep = e.gt(cutoff);
        long rank = keep.sum().item<long>();
        var inv = torch.where(keep, e.reciprocal(), torch.zeros_like(e));
        var b = inv.unsqueeze(1) * u.mT.matmul(phi);          // Λ⁻¹ Uᵀ Φ: (ΦᵀΦ)⁺ = bᵀ b
        var w = b.mT.matmul(b);
        double scale = 1;
        if (Options.ReferenceRescaling)
        {
            scale = w.abs().mean().item<double>();
            if (scale > 0) w = w / scale;
        }
        return (w.MoveToOuterDisposeScope(), new KernelDiagnostics(model, KernelSolver.Eigh, rank, k, maxEig, scale));
    }

    private double EpsF => featurizer.Dtype == ScalarType.Float64 ? 2.220446049250313e-16 : featurizer.Dtype == ScalarType.Float32 ? 1.1920929e-7 : 9.765625e-4;

    /// <summary>Eigenvalues below this fraction of λ_max count as zero: <see cref="TrakOptions.RankTolerance"/>,
    /// or max(n, k)·(ε_f² + ε₆₄), the noise level of a Gram matrix of features of the store's dtype.</summary>
    private double RankTolerance(long n, long k) => Options.RankTolerance ?? Math.Max(n, k) * (EpsF * EpsF + 2.220446049250313e-16);

    private (Tensor Inverse, KernelDiagnostics Diag) Invert(Tensor kernel, int model, int n)
    {
        using var scope = NewDisposeScope();
        long k = kernel.shape[0];
        using var dampS = Options.Damping.ToScalar();
        var reg = SymmetricEigen.Symmetrized(Options.Damping > 0 ? kernel.add(torch.eye(k, dtype: ScalarType.Float64, device: kernel.device), dampS) : kernel);
        var solver = Options.Solver == KernelSolver.Auto ? (Options.Damping > 0 ? KernelSolver.Cholesky : KernelSolver.Eigh) : Options.Solver;
        Tensor w;
        long rank = k;
        double maxEig = double.NaN;
        if (Options.Solver == KernelSolver.Auto && Options.Damping == 0 && TryFullRankCholesky(reg, n, out var full, out maxEig))
        {
            solver = KernelSolver.Cholesky;
            w = full;
        }
        else if (solver == KernelSolver.Cholesky)
        {
            var (l, info) = torch.linalg.cholesky_ex(reg, check_errors: false);
            if (info.item<int>() == 0) w = torch.cholesky_inverse(l);
            else if (Options.Solver == KernelSolver.Cholesky)
                throw new InfluenceSharpException($"TRAK model {model}: the kernel Φᵀ Φ + λI is not positive definite (λ = {Options.Damping}); pass a positive damping or use the Eigh solver");
            else { solver = KernelSolver.Eigh; w = PseudoInverse(reg, n, out rank, out maxEig); }
        }
        else w = PseudoInverse(reg, n, out rank, out maxEig);
        double scale = 1;
        if (Options.ReferenceRescaling)
        {
            scale = w.abs().mean().item<double>();
            if (scale > 0) w = w / scale;
        }
        return (w.MoveToOuterDisposeScope(), new KernelDiagnostics(model, solver, rank, k, maxEig, scale));
    }

    /// <summary>λ = 0: when ΦᵀΦ is comfortably full rank, its pseudo-inverse is its inverse, which a
    /// Cholesky factorisation gives at about a quarter of the eigendecomposition's cost (k = 2,048:
    /// 0.35 s against 1.25 s on 2 cores). Full rank means that no eigenvalue falls below Eigh's
    /// cutoff tol·λ_max; λ_min = 1/‖K⁻¹‖₂ and λ_max are estimated by power iteration, whose Rayleigh
    /// quotients approach the extreme eigenvalues from inside, so the test asks for a margin of 100.
    /// After j steps from a unit start vector with component c along the extreme eigenvector the
    /// quotient is at least λ·c^(1/j): at j = 20 even c = 10⁻⁴ leaves it within a factor 1.6.
    /// Anything short of the margin goes to Eigh, which decides the rank.</summary>
    private bool TryFullRankCholesky(Tensor reg, int n, out Tensor inverse, out double maxEig) =>
        TryFullRankCholesky(reg, RankTolerance(n, reg.shape[0]), out inverse, out maxEig);

    /// <summary>The inverse of the symmetric matrix reg by Cholesky, when no eigenvalue is within a
    /// factor 100 of the cutoff tol·λ_max; false (and no inverse) otherwise.</summary>
    internal static bool TryFullRankCholesky(Tensor reg, double tol, out Tensor inverse, out double maxEig)
    {
        inverse = null!; maxEig = double.NaN;
        using var scope = NewDisposeScope();      // the factor, and a refused inverse, are freed before Eigh runs
        var (l, info) = torch.linalg.cholesky_ex(reg, check_errors: false);
        if (info.item<int>() != 0) return false;
        var w = torch.cholesky_inverse(l);
        double lambdaMax = LargestEigenvalue(reg), inverseMax = LargestEigenvalue(w);
        if (!(lambdaMax > 0 && inverseMax > 0 && 1 / inverseMax > 100 * tol * lambdaMax)) return false;
        inverse = w.MoveToOuterDisposeScope(); maxEig = lambdaMax;
        return true;
    }

    /// <summary>Power iteration from a fixed-seed start (20 steps; the last quotient is that of M¹⁹v₀,
    /// so the bound above holds with j = 19): a Rayleigh quotient, at most the
    /// largest eigenvalue of the symmetric positive semi-definite matrix m.</summary>
    private static double LargestEigenvalue(Tensor m)
    {
        using var scope = NewDisposeScope();
        using var gen = new Generator(20_240_601, m.device);
        var v = torch.randn(m.shape[0], 1, dtype: m.dtype, device: m.device, generator: gen);
        double rayleigh = 0;
        for (int i = 0; i < 20; i++)
        {
            var norm = v.norm().item<double>();
            if (!(norm > 0) || !double.IsFinite(norm)) return double.NaN;
            using (var inv = (1 / norm).ToScalar()) v = v.mul(inv);   // explicit Scalar: held while libtorch reads it
            var mv = m.matmul(v);
            rayleigh = (v * mv).sum().item<double>();
            v = mv;
        }
        return rayleigh;
    }

    private Tensor PseudoInverse(Tensor reg, int n, out long rank, out double maxEig)
    {
        var (e, v) = torch.linalg.eigh(reg);
        maxEig = e.max().item<double>();
        double tol = RankTolerance(n, reg.shape[0]);
        var keep = e.gt(tol * Math.Max(maxEig, 0));
        rank = keep.sum().item<long>();
        var inv = torch.where(keep, e.reciprocal(), torch.zeros_like(e));
        return (v * inv.unsqueeze(0)).matmul(v.mT);
    }

    protected override Tensor PrepareQueries(Dictionary<string, Tensor> q)
    {
        var phi = q["features"].to(Device).to(ScalarType.Float64);
        int m = featurizer.ModelCount;
        long k = featurizer.K;
        var parts = Enumerable.Range(0, m).Select(i => phi.narrow(1, i * k, k).matmul(inverses![i])).ToArray();
        return (torch.cat(parts, 1) / m).to(featurizer.Dtype);
    }

    protected override Tensor ScoreBlock(Tensor prepared, FeatureBlock block)
    {
        var phi = block.Features.to(Device);
        var qbar = block["q"].to(Device).mean(new long[] { 1 });
        return prepared.matmul(phi.mT) * qbar.unsqueeze(0);
    }

    /// <summary>Scores are prepared queries · (φ q̄): an inner product with rows φ scaled by q̄.</summary>
    public override bool HasInnerProductForm => true;
    protected override Tensor IndexRows(FeatureBlock block) =>
        block.Features.to(Device) * block["q"].to(Device).mean(new long[] { 1 }).unsqueeze(1);

    /// <summary>Rows of a block converted to float64 at a time: a whole 4,096-row block at k = 2,048
    /// is 64 MB in float64, and its product with the inverse as much again, so the peak memory would
    /// grow with the block (with the training set, up to the block size).</summary>
    internal long RowChunk { get; init; } = 1024;

    protected override Tensor SelfBlock(FeatureBlock block)
    {
        var features = block.Features;
        int m = featurizer.ModelCount;
        long k = featurizer.K, n = features.shape[0];
        var total = torch.zeros(n, dtype: ScalarType.Float64, device: Device);
        for (long r = 0; r < n; r += RowChunk)
        {
            using var scope = NewDisposeScope();
            long c = Math.Min(RowChunk, n - r);
            var phi = features.narrow(0, r, c).to(Device).to(ScalarType.Float64);
            var part = total.narrow(0, r, c);
            for (int i = 0; i < m; i++)
            {
                var p = phi.narrow(1, i * k, k);
                part.add_(p.matmul(inverses![i]).mul_(p).sum(1));
            }
        }
        var qbar = block["q"].to(Device).to(ScalarType.Float64).mean(new long[] { 1 });
        using var models = ((double)m).ToScalar();
        return total.div_(models).mul_(qbar);
    }

    public override void Dispose()
    {
        if (inverses is not null) foreach (var t in inverses) t.Dispose();
        inverses = null;
        featurizer.Dispose();
        base.Dispose();
    }
}

/// <summary>TRAK features: per model, the projected gradient of the task's model output / √p, and Q.</summary>
internal sealed class TrakFeaturizer : IFeaturizer, IDisposable
{
    private readonly IReadOnlyList<nn.Module<Tensor, Tensor>> models;
    private readonly IAttributionTask task;
    private readonly List<List<TrackedLayer>> layersPerModel = new();
    private readonly List<GradientProjector> projectors = new();
    private readonly double norm;
    private readonly Dictionary<string, string> settings;

    public TrakFeaturizer(IReadOnlyList<nn.Module<Tensor, Tensor>> models, TrakOptions o, IAttributionTask task)
    {
        if (models.Count == 0) throw new InfluenceSharpException("TRAK needs at least one model");
        this.models = models; this.task = task;
        Layers = TrackedLayer.Find(models[0], o.Layers);
        string Shapes(IEnumerable<TrackedLayer> ls) => string.Join(";", ls.Select(l => $"{l.Name}:{l.Out}x{l.In}"));
        var p0 = models[0].parameters().First();
        Dtype = p0.dtype; Device = p0.device;
        for (int m = 0; m < models.Count; m++)
        {
            var layers = TrackedLayer.Find(models[m], o.Layers);
            if (Shapes(layers) != Shapes(Layers))
                throw new InfluenceSharpException($"TRAK model {m} has layers {Shapes(layers)} but model 0 has {Shapes(Layers)} (another architecture?)");
            layersPerModel.Add(layers);
            projectors.Add(new GradientProjector(layers, o.Projection, stream: (ulong)m, unitEntries: true, Dtype, Device));
        }
        K = projectors[0].OutputDim;
        long p = o.NormalizationCount ?? projectors[0].InputDim;
        if (p < 1) throw new InfluenceSharpException($"normalization count {p}: must be at least 1");
        norm = 1 / Math.Sqrt(p);
        ModelFingerprints = models.Select(ModelFingerprint.Of).ToArray();
        settings = new Dictionary<string, string>
        {
            ["output"] = OutputKey(task),
            ["layers"] = Shapes(Layers),
            ["normalization_count"] = p.ToString(CultureInfo.InvariantCulture),
        };
        foreach (var kv in o.Projection.Describe()) settings[kv.Key] = kv.Value;
    }

    /// <summary>The store's name for the task's output function: a task that keeps the default margin
    /// is "ClassificationTrakOutput" (the name stores were written with), one that defines its own
    /// output is named by its type.</summary>
    internal static string OutputKey(IAttributionTask task)
    {
        var map = task.GetType().GetInterfaceMap(typeof(IAttributionTask));
        bool own = map.InterfaceMethods.Zip(map.TargetMethods)
            .Any(p => p.First.Name is nameof(IAttributionTask.ModelOutput) or nameof(IAttributionTask.OutToLoss) && p.Second.DeclaringType != typeof(IAttributionTask));
        return own ? task.GetType().Name : "ClassificationTrakOutput";
    }

    public string Method => "trak";
    public IReadOnlyDictionary<string, string> Settings => settings;
    public IReadOnlyList<string> ModelFingerprints { get; }
    public List<TrackedLayer> Layers { get; }
    public int ModelCount => models.Count;
    public long K { get; }
    public long Dim => K * models.Count;
    public ScalarType Dtype { get; }
    public Device Device { get; }

    public Dictionary<string, Tensor> Compute(IDataset data, ReadOnlySpan<int> indices, bool query)
    {
        var x = data.Inputs(indices, Device);
        var y = data.Targets(indices, Device);
        var phis = new Tensor[models.Count];
        var qs = new Tensor[models.Count];
        for (int m = 0; m < models.Count; m++)
        {
            models[m].eval();
            using var capture = new GradientCapture(models[m], layersPerModel[m]);   // hooks for this pass only
            var (logits, lbs) = capture.Run(models[m], x, l => task.ModelOutput(l, y));
            phis[m] = projectors[m].Project(lbs) * norm;
            using (torch.no_grad()) qs[m] = task.OutToLoss(logits, y);
        }
        return new Dictionary<string, Tensor> { ["features"] = torch.cat(phis, 1), ["q"] = torch.stack(qs, 1) };
    }

    public void Dispose()
    {
        foreach (var p in projectors) p.Dispose();
        projectors.Clear();
    }
}
