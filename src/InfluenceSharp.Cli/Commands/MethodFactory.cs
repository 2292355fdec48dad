using InfluenceSharp.Methods;
using InfluenceSharp.Features;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Settings every method understands (unused ones are ignored by a method).</summary>
internal sealed record MethodSettings
{
    public QueryMeasurement Measure { get; init; } = QueryMeasurement.Loss;
    public double? Damping { get; init; }
    public string? Layers { get; init; }
    public int BatchSize { get; init; } = 256;
    public int Seed { get; init; }
    /// <summary>TRAK: number of independently trained models (the run's model plus N−1 retrained with
    /// other seeds, cached under RUN_DIR/ensemble).</summary>
    public int Ensemble { get; init; } = 1;
    /// <summary>TRAK: other runs (run directories or checkpoint files) whose models join the run's as
    /// ensemble members (comma-joined in ToString, which keys the per-process method cache).</summary>
    public IReadOnlyList<string> Members { get; init; } = Array.Empty<string>();
    /// <summary>TRAK: which checkpoints of the run and of each member run are members: last, all or E,F,...</summary>
    public string MemberEpochs { get; init; } = "last";
    /// <summary>Projection dimension for TRAK and projected TracIn (dense layout).</summary>
    public int ProjectionDim { get; init; } = 2048;
    /// <summary>Kronecker (default: projects each Linear/Conv2d layer's output gradient and input
    /// separately, milliseconds per batch on a CPU) or dense (the reference TRAK projection of the
    /// whole gradient; seconds per batch on a CPU for a 200k-parameter model).</summary>
    public ProjectionLayout Layout { get; init; } = ProjectionLayout.Kronecker;
    /// <summary>if-explicit, if-cg, if-lissa, if-arnoldi settings (null = the library's defaults).</summary>
    public HvpSettings? Hvp { get; init; }
    /// <summary>ekfac, kfac, diagonal, identity: checkpoints whose scores are summed (weighted by step
    /// size): last (the default: the run's final model alone), all, or E,F,...</summary>
    public string IfEpochs { get; init; } = "last";
    /// <summary>ekfac, kfac, diagonal: true or empirical Fisher.</summary>
    public FisherType Fisher { get; init; } = FisherType.True;
    /// <summary>Keep method features in RUN_DIR/store so later commands reuse them.</summary>
    public bool UseStore { get; init; } = true;
}

/// <summary>Settings of the Hessian-vector-product influence functions (see HvpSolverOptions).</summary>
internal sealed record HvpSettings(HessianKind Hessian, double L2, double CgTolerance, int CgIterations, int? LissaDepth, double? LissaScale,
    int LissaRepetitions, int? LissaBatchSize, int ArnoldiIterations, int ArnoldiTopK)
{
    static readonly HvpSolverOptions D = new();
    public static readonly HvpSettings Default = new(D.Hessian, D.L2, D.CgTolerance, D.CgMaxIterations, D.LissaDepth, D.LissaScale,
        D.LissaRepetitions, D.LissaBatchSize, D.ArnoldiIterations, D.ArnoldiTopK);
    /// <summary>--l2 was given (else a run trained by L-BFGS supplies its weight decay).</summary>
    public bool L2Given { get; init; }
    /// <summary>--hessian was given (else ekfac-astra uses the Gauss-Newton matrix, which EK-FAC approximates).</summary>
    public bool HessianGiven { get; init; }
    /// <summary>ekfac-astra: preconditioned steps after the EK-FAC solution.</summary>
    public int AstraSteps { get; init; } = new Methods.Astra.AstraOptions().Steps;
}

/// <summary>Builds any attribution method by name for a training run, so that detection, explain,
/// the evaluations and the demo treat every method alike.</summary>
internal static class MethodFactory
{
    public static readonly string[] Names = { "ekfac", "ekfac-last", "kfac", "diagonal", "identity", "if-explicit", "if-cg", "if-lissa", "if-arnoldi", "ekfac-astra", "relatif", "datainf", "rps", "knn-shapley", "tracin", "tracin-last", "tracin-proj", "graddot", "gradcos", "trak" };
    public static readonly string[] DemoMethods = { "ekfac", "tracin-last", "trak" };

    public static IAttributionMethod Create(string name, RunContext run, MethodSettings s, Profiler profiler, bool quiet = false)
    {
        string key = $"{name}|{s}|{string.Join(",", s.Members)}";
        if (run.Methods.TryGetValue(key, out var cached)) return cached;
        return run.Methods[key] = Build(name, run, s, profiler, quiet);
    }

    /// <summary>The method's name with the settings that make it another method (summed checkpoints,
    /// empirical Fisher), for tables and file names: e.g. ekfac-epochs-all-empirical.</summary>
    public static string Label(string name, MethodSettings s)
    {
        if (!(name is "ekfac" or "ekfac-last" or "kfac" or "diagonal" or "identity")) return name + LayoutSuffix(name, s);
        string label = name;
        if (s.IfEpochs != "last") label += "-epochs-" + s.IfEpochs.Replace(',', '_');
        if (s.Fisher == Methods.InfluenceFunctions.FisherType.Empirical && name != "identity") label += "-empirical";
        return label;
    }

    /// <summary>"-dense2048" or "-hadamard2048" for the projected methods with another layout than the
    /// default Kronecker one; empty otherwise.</summary>
    public static string LayoutSuffix(string name, MethodSettings s) =>
        name is "trak" or "tracin-proj" && s.Layout != ProjectionLayout.Kronecker ? $"-{s.Layout.ToString().ToLowerInvariant()}{s.ProjectionDim}" : "";

    /// <summary>The L2 coefficient of a run trained to convergence by full-batch L-BFGS (its weight
    /// decay: the objective is mean CE + (L2/2)‖θ‖²); null for SGD runs. Influence functions of such
    /// a run tie their regularisation to it: if-* add L2·I to the curvature (unless --l2 is given)
    /// with a tiny extra damping 1e-6, and the Kronecker methods (ekfac, kfac, diagonal, identity) use
    /// λ = L2 (unless --damping is given), so that H + λI is the objective's curvature.</summary>
    public static double? ConvergedL2(RunContext run) =>
        run.Last.Info.Training is { LbfgsTolerance: not null } t ? t.WeightDecay : null;

    static IAttributionMethod Build(string name, RunContext run, MethodSettings s, Profiler profiler, bool quiet)
    {
        var task = new ClassificationTask(s.Measure);
        double? convergedL2 = ConvergedL2(run);
        var progress = quiet ? null : new ConsoleProgress();
        switch (name)
        {
            case "ekfac" or "ekfac-last" or "kfac" or "diagonal" or "identity":
            {
                // ekfac-last: EK-FAC on the model's last Linear layer only (the layer tracin-last uses):
                // the detection method of the README's method guide (measured in bench/README.md).
                string? layers = name == "ekfac-last" ? LastLinear(run) : s.Layers;
                var fo = new FactorOptions { Strategy = InfluenceCommands.ParseStrategy(name == "ekfac-last" ? "ekfac" : name), Fisher = s.Fisher, Layers = layers, BatchSize = s.BatchSize, Seed = s.Seed, Progress = progress };
                var so = new ScoreOptions { Damping = s.Damping ?? convergedL2, TrainBatchSize = s.BatchSize, Progress = progress };
                InfluenceFunction AtCheckpoint(Training.Checkpoint c)
                {
                    var model = c.LoadModel();
                    var factors = new FactorFitter(model, task, fo, profiler).Fit(run.Data.Train)!;
                    return new InfluenceFunction(model, task, factors, so, profiler);
                }
                if (s.IfEpochs == "last") return AtCheckpoint(run.Last);
                // Influence functions summed over the trajectory: each checkpoint's own curvature, weighted by its step size.
                var ckpts = Ensemble.RunCheckpoints(run, s.IfEpochs, "--if-epochs");
                if (!quiet) Console.Error.WriteLine($"{name}: summed over {ckpts.Count} checkpoint(s), epochs {string.Join(",", ckpts.Select(c => c.Info.Epoch))}, weighted by step size");
                return new CheckpointSum($"{name}-epochs-{s.IfEpochs}", ckpts.Select(c =>
                {
                    double eta = c.Info.LearningRate;
                    if (!(eta > 0) || !double.IsFinite(eta))
                        throw new InfluenceSharpException($"--if-epochs: {c.WeightsPath} records no positive learning rate (step size {eta}); its score cannot be weighted");
                    return ((IAttributionMethod)AtCheckpoint(c), eta);
                }).ToList());
            }
            case "if-explicit" or "if-cg" or "if-lissa" or "if-arnoldi":
            {
                var h = s.Hvp ?? HvpSettings.Default;
                var o = new HvpSolverOptions
                {
                    // --damping heuristic (not given): the options' default absolute λ.
                    Damping = s.Damping ?? (convergedL2 is null ? new HvpSolverOptions().Damping : 1e-6),
                    L2 = h.L2Given || convergedL2 is null ? h.L2 : convergedL2.Value, Hessian = h.Hessian, Layers = s.Layers,
                    BatchSize = s.BatchSize, Seed = s.Seed, Progress = progress,
                    CgTolerance = h.CgTolerance, CgMaxIterations = h.CgIterations,
                    LissaDepth = h.LissaDepth, LissaScale = h.LissaScale, LissaRepetitions = h.LissaRepetitions, LissaBatchSize = h.LissaBatchSize,
                    ArnoldiIterations = h.ArnoldiIterations, ArnoldiTopK = h.ArnoldiTopK,
                };
                var solver = name switch { "if-explicit" => HvpSolver.Explicit, "if-cg" => HvpSolver.Cg, "if-lissa" => HvpSolver.Lissa, _ => HvpSolver.Arnoldi };
                return new HvpInfluence(run.Last.LoadModel(), task, run.Data.Train, solver, o, profiler);
            }
            case "ekfac-astra":
            {
                // EK-FAC on the tracked layers, refined by preconditioned CG on the true system
                // (Gauss-Newton unless --hessian is given; damping and L2 as the if-* solvers).
                var h = s.Hvp ?? HvpSettings.Default;
                var model = run.Last.LoadModel();
                var fo = new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = s.Fisher, Layers = s.Layers, BatchSize = s.BatchSize, Seed = s.Seed, Progress = progress };
                var factors = new FactorFitter(model, task, fo, profiler).Fit(run.Data.Train)!;
                var system = new HvpSolverOptions
                {
                    Damping = s.Damping ?? (convergedL2 is null ? new HvpSolverOptions().Damping : 1e-6),
                    L2 = h.L2Given || convergedL2 is null ? h.L2 : convergedL2.Value,
                    Hessian = h.HessianGiven ? h.Hessian : HessianKind.GaussNewton, Layers = s.Layers,
                    BatchSize = s.BatchSize, Seed = s.Seed, Progress = progress,
                };
                return new Methods.Astra.EkfacAstra(model, task, run.Data.Train, factors, new Methods.Astra.AstraOptions { System = system, Steps = h.AstraSteps }, profiler);
            }
            case "relatif":
            {
                // ℓ-relative influence over EK-FAC (damping as ekfac's).
                var model = run.Last.LoadModel();
                var fo = new FactorOptions { Strategy = FactorStrategy.Ekfac, Fisher = s.Fisher, Layers = s.Layers, BatchSize = s.BatchSize, Seed = s.Seed, Progress = progress };
                var factors = new FactorFitter(model, task, fo, profiler).Fit(run.Data.Train)!;
                var so = new ScoreOptions { Damping = s.Damping ?? convergedL2, TrainBatchSize = s.BatchSize, Progress = progress };
                return new Methods.RelatIF.RelatIF(new InfluenceFunction(model, task, factors, so, profiler));
            }
            case "datainf":
                return new Methods.DataInf.DataInf(run.Last.LoadModel(), task, new Methods.DataInf.DataInfOptions { Damping = s.Damping, Layers = s.Layers, BatchSize = s.BatchSize, Progress = progress });
            case "rps":
                return new Methods.Representer.RepresenterPoints(run.Last.LoadModel(), new Methods.Representer.RepresenterOptions { BatchSize = s.BatchSize, Progress = progress });
            case "knn-shapley":
                return new Methods.KnnShapley.KnnShapley(run.Last.LoadModel(), new Methods.KnnShapley.KnnShapleyOptions { BatchSize = s.BatchSize, Progress = progress });
            case "tracin" or "tracin-last" or "tracin-proj":
            {
                var ckpts = TracInCheckpoint.From(run.Checkpoints);
                string? store = Store(run, name, s);
                return name switch
                {
                    "tracin" => new TracInCP(ckpts, task, new TracInOptions { Layers = s.Layers, TrainBatchSize = s.BatchSize, StoreDirectory = store, Progress = progress }, profiler),
                    "tracin-last" => new TracInCPFast(ckpts, task, new TracInFastOptions { TrainBatchSize = s.BatchSize, StoreDirectory = store, Progress = progress }, profiler),
                    _ => new TracInCPFastRandProj(ckpts, task, new TracInRandProjOptions
                    {
                        Layers = s.Layers, TrainBatchSize = s.BatchSize, StoreDirectory = store, Progress = progress,
                        Projection = new ProjectionOptions { Layout = s.Layout, Dim = s.ProjectionDim, Seed = s.Seed },
                    }, profiler),
                };
            }
            case "graddot" or "gradcos":
            {
                var o = new TracInOptions { Layers = s.Layers, TrainBatchSize = s.BatchSize, StoreDirectory = Store(run, name, s), Progress = progress };
                return name == "graddot" ? GradDot.Create(run.Last.LoadModel(), task, o, profiler) : GradCos.Create(run.Last.LoadModel(), task, o, profiler);
            }
            case "trak":
            {
                List<TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>> models;
                string storeName;
                if (Ensemble.FromRuns(s))
                {
                    var members = Ensemble.MemberCheckpoints(run, s);
                    if (!quiet) Console.Error.WriteLine($"trak: {members.Count} ensemble member(s): {string.Join(", ", members.Select(c => c.WeightsPath))}");
                    models = members.Select(c => c.LoadModel()).ToList();
                    storeName = $"trak-members-{Ensemble.Key(members)}";
                }
                else { models = Ensemble.Models(run, s.Ensemble, quiet); storeName = $"trak{s.Ensemble}"; }
                return new Trak(models, new TrakOptions
                {
                    Layers = s.Layers, TrainBatchSize = s.BatchSize, StoreDirectory = Store(run, storeName, s), Progress = progress,
                    // λ in (ΦᵀΦ + λI)⁻¹; 'heuristic' (no --damping) is TRAK's reference λ = 0. The store
                    // holds Φ and ΦᵀΦ only, so it does not depend on λ.
                    Damping = s.Damping ?? 0,
                    Projection = new ProjectionOptions { Layout = s.Layout, Dim = s.ProjectionDim, Seed = s.Seed },
                }, profiler: profiler);
            }
            default:
                throw new ArgumentException($"unknown method {name} (choose {string.Join(", ", Names)})", nameof(name));
        }
    }

    /// <summary>The name of the run's model's last trainable Linear layer (its logits' layer).</summary>
    static string LastLinear(RunContext run)
    {
        var model = run.Last.LoadModel();
        var last = Gradients.TrackedLayer.Find(model).LastOrDefault(l => !l.IsConv)
            ?? throw new InfluenceSharpException($"ekfac-last: {run.Last.Info.Model.Describe()} has no trainable Linear layer");
        return last.Name;
    }

    /// <summary>Where a method keeps its training-set features for reuse (null = in memory).</summary>
    static string? Store(RunContext run, string name, MethodSettings s) =>
        s.UseStore ? Path.Combine(run.Dir, "store", $"{name}-{s.Measure.ToString().ToLowerInvariant()}-{s.Layers ?? "all"}-{s.Layout.ToString().ToLowerInvariant()}{s.ProjectionDim}-{s.Seed}") : null;
}
