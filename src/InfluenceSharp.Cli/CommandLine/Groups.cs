using System.CommandLine;
using InfluenceSharp.Cli.Commands;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.CommandLine;

/// <summary>--device, --threads, --quiet: on every command that computes.</summary>
internal sealed class ComputeOptions
{
    public Option<string> Device { get; } = Opt.Str("--device", "cpu | cuda[:N] (this build is TorchSharp-cpu: cpu only)", "DEVICE", fallback: "cpu");
    public Option<int?> Threads { get; } = Opt.OptionalInt("--threads", "torch CPU threads [default: torch's choice]", 1, 4096);
    public Option<bool> Quiet { get; } = Opt.Flag("--quiet", "no progress, logs or profiler tables on stderr (results still go to stdout)", "-q");

    public ComputeOptions()
    {
        Device.Validators.Add(r =>
        {
            var d = r.GetValueOrDefault<string>();
            if (!(d == "cpu" || d == "cuda" || (d.StartsWith("cuda:", StringComparison.Ordinal) && int.TryParse(d[5..], System.Globalization.NumberStyles.None, null, out _))))
                r.AddError($"--device {d}: choose cpu, cuda or cuda:N");
        });
    }

    public void AddTo(Command c) { c.Add(Device); c.Add(Threads); c.Add(Quiet); }

    /// <summary>Applies --threads and checks --device; returns --quiet.</summary>
    public bool Apply(ParseResult p)
    {
        string device = p.GetValue(Device)!;
        if (device != "cpu")
        {
            if (!cuda.is_available()) throw new InfluenceSharpException($"--device {device}: this build has no CUDA (TorchSharp-cpu); use --device cpu");
            throw new InfluenceSharpException($"--device {device}: the commands run on the CPU only for now; use --device cpu");
        }
        if (p.GetValue(Threads) is { } n) set_num_threads(n);
        Commands.RunContext.Quiet.Value = p.GetValue(Quiet);
        return p.GetValue(Quiet);
    }
}

/// <summary>Settings every attribution method understands (a method ignores those it does not use),
/// and the settings of the methods' own (<see cref="MethodDescriptor.Parameters"/>). Which methods use
/// an option, what the help says about it and when it is refused all come from the method registry.</summary>
internal sealed class MethodSettingOptions
{
    readonly IReadOnlyList<MethodDescriptor> offered;

    public Option<string>? Measure { get; }
    public Option<double?>? Damping { get; }
    public Option<string> Layers { get; } = Opt.Str("--layers", "track only layers whose names contain one of these (comma separated) [default: all Linear/Conv2d]", "NAMES");
    public Option<int> BatchSize { get; } = Opt.Int("--batch-size", "training examples per batch", 256, 1);
    public Option<int> Seed { get; } = Opt.Int("--seed", "seeds sampled labels (true Fisher) and random projections", 0, 0);
    public Option<int> Ensemble { get; }
    public Option<string> Members { get; }
    public Option<string> MemberEpochs { get; }
    public Option<int> ProjDim { get; }
    public Option<string> ProjLayout { get; }

    // Hessian-vector-product influence functions; null where no IF can be chosen.
    public HvpOptionSet? Hvp { get; }
    // The factored influence functions; null where no IF can be chosen.
    public Option<string>? IfEpochs { get; }
    public Option<string>? Fisher { get; }
    /// <summary>--NAME for each method parameter of the offered methods.</summary>
    public IReadOnlyList<(MethodParameter Parameter, Option<string> Option)> Parameters { get; }

    /// <summary>"ekfac, kfac": the registered methods that use a setting.</summary>
    public static string Users(MethodOption option) => string.Join(", ", AttributionMethods.All.Where(d => d.Uses.HasFlag(option)).Select(d => d.Name));

    /// <param name="measure">false where the command fixes the measurement itself (evaluate lds: --target).</param>
    /// <param name="damping">false where no influence function can be chosen (build-store).</param>
    /// <param name="offered">the methods the command offers [default: all].</param>
    public MethodSettingOptions(bool measure = true, bool damping = true, IReadOnlyList<MethodDescriptor>? offered = null)
    {
        this.offered = offered ?? AttributionMethods.All;
        if (measure) Measure = Opt.Choice("--measure", "query measurement: loss or margin", "loss", "loss", "margin");
        Ensemble = Opt.Int("--ensemble", $"{Users(MethodOption.Ensemble)}: independently trained models (the run's plus N-1 retrained with other seeds, cached in RUN_DIR/ensemble)", 1, 1, 1000);
        Members = Opt.Str("--members", $"{Users(MethodOption.Members)}: ensemble members from runs you trained: other runs (RUN_DIR or checkpoint file, comma separated; same training data and architecture) whose models join --run's", "RUN,...");
        MemberEpochs = Opt.Str("--member-epochs", $"{Users(MethodOption.MemberEpochs)}: which checkpoints of --run and of each --members run are ensemble members: last, all, or epochs E,F,...", "last|all|E,...", fallback: "last");
        ProjDim = Opt.Int("--proj-dim", $"{Users(MethodOption.ProjectionDim)}: projection dimension", 2048, 1, 1 << 24, "K");
        ProjLayout = Opt.Choice("--proj-layout", $"{Users(MethodOption.ProjectionLayout)}: kronecker (per-layer projections, fast on a CPU), dense (the reference TRAK projection) or hadamard (a subsampled randomised Hadamard transform of the whole gradient: O(p log p) per example, no matrix stored)", "kronecker", "kronecker", "dense", "hadamard");
        if (damping)
        {
            var heuristics = AttributionMethods.All.Where(d => d.DampingHeuristic is not null).GroupBy(d => d.DampingHeuristic!)
                .Select(g => $"{string.Join(", ", g.Select(d => d.Name))}: {g.Key}");
            Damping = Opt.Damping("absolute damping (a non-negative finite number) or 'heuristic', the method's default: " + string.Join("; ", heuristics) + " [default: heuristic]");
            Hvp = new HvpOptionSet();
            IfEpochs = Opt.Str("--if-epochs", $"{Users(MethodOption.IfEpochs)}: checkpoints of --run whose influence-function scores are summed, each with its own curvature and weighted by its step size (TracIn's trajectory sum): last, all, or epochs E,F,...", "last|all|E,...", fallback: "last");
            Fisher = Opt.Choice("--fisher", $"{Users(MethodOption.Fisher)}: the curvature's output gradients use labels sampled from the model (true Fisher) or the training labels (empirical Fisher)", "true", "true", "empirical");
        }
        var parameters = new List<(MethodParameter, Option<string>)>();
        foreach (var p in this.offered.SelectMany(d => d.Parameters).GroupBy(p => p.Name).Select(g => g.First()))
        {
            var users = string.Join(", ", this.offered.Where(d => d.Parameters.Any(q => q.Name == p.Name)).Select(d => d.Name));
            var o = Opt.Str("--" + p.Name, $"{users}: {p.Description} [default: {p.Default}]", p.Kind switch { MethodParameterKind.Text => "TEXT", MethodParameterKind.NumberOrAuto => "X|auto", _ => "X" });
            o.Validators.Add(r => { if (r.Tokens.Count > 0 && p.Validate(r.Tokens[^1].Value) is { } why) r.AddError(why); });
            parameters.Add((p, o));
        }
        Parameters = parameters;
    }

    public void AddTo(Command c)
    {
        if (Measure is not null) c.Add(Measure);
        if (Damping is not null) c.Add(Damping);
        c.Add(Layers); c.Add(BatchSize); c.Add(Seed); c.Add(Ensemble); c.Add(Members); c.Add(MemberEpochs); c.Add(ProjDim); c.Add(ProjLayout);
        if (IfEpochs is not null && Fisher is not null)
        {
            c.Add(IfEpochs); c.Add(Fisher);
            IfEpochs.Validators.Add(r =>
            {
                try { Methods.Trak.Ensemble.ParseEpochs(r.GetValueOrDefault<string>(), "--if-epochs"); }
                catch (InfluenceSharpException e) { r.AddError(e.Message); }
            });
        }
        Hvp?.AddTo(c);
        foreach (var (_, o) in Parameters) c.Add(o);
        MemberEpochs.Validators.Add(r =>
        {
            try { Methods.Trak.Ensemble.ParseEpochs(r.GetValueOrDefault<string>()); }
            catch (InfluenceSharpException e) { r.AddError(e.Message); }
        });
        c.Validators.Add(r =>
        {
            // --proj-dim is the dense projection's k; the Kronecker layout projects each layer to
            // 16 x 64 (ProjectionOptions.GradientDim x ActivationDim) and has no single dimension.
            // Members either come from runs the user has (--members, --member-epochs) or are trained here (--ensemble).
            if (r.GetResult(Ensemble) is { Implicit: false } && Opt.ValueIfValid(r, Ensemble) > 1
                && (r.GetResult(Members) is { Implicit: false } || r.GetResult(MemberEpochs) is { Implicit: false }))
                r.AddError("--ensemble: not with --members or --member-epochs (give the ensemble's members either as runs you trained or as a count to train)");
            if (r.GetResult(ProjDim) is { Implicit: false } && r.GetValue(ProjLayout) is not ("dense" or "hadamard"))
                r.AddError("--proj-dim: only with --proj-layout dense or hadamard (the default Kronecker layout projects each layer's output gradients and inputs to 16 x 64)");
        });
    }

    /// <summary>The options refused when no chosen method uses them (the others are shared settings a
    /// method may simply ignore).</summary>
    IEnumerable<(Option? Option, MethodOption Setting)> Refusable()
    {
        yield return (Damping, MethodOption.Damping);
        yield return (IfEpochs, MethodOption.IfEpochs);
        yield return (Fisher, MethodOption.Fisher);
        yield return (Members, MethodOption.Members);
        yield return (MemberEpochs, MethodOption.MemberEpochs);
        if (Hvp is not null) foreach (var x in Hvp.Settings) yield return x;
    }

    IEnumerable<(Option Option, MethodOption Setting)> All()
    {
        foreach (var (o, m) in Refusable()) if (o is not null) yield return (o, m);
        yield return (Layers, MethodOption.Layers);
        yield return (BatchSize, MethodOption.TrainBatchSize);
        yield return (Seed, MethodOption.Seed);
        yield return (Ensemble, MethodOption.Ensemble);
        yield return (ProjDim, MethodOption.ProjectionDim);
        yield return (ProjLayout, MethodOption.ProjectionLayout);
        if (Measure is not null) yield return (Measure, MethodOption.Measure);
    }

    /// <summary>Refuses settings that none of the chosen methods would use (they would be silently
    /// ignored), settings a chosen method refuses, and settings a chosen method cannot work with.</summary>
    public void RefuseUnused(Command c, Option<string[]> methods)
    {
        c.Validators.Add(r =>
        {
            if (r.GetResult(methods) is null) return;
            var names = Opt.ValueIfValid(r, methods) ?? Array.Empty<string>();   // a bad --methods has its own error
            var chosen = names.Select(AttributionMethods.Find).OfType<MethodDescriptor>().ToList();
            if (chosen.Count == 0 || chosen.Count != names.Length) return;
            string list = string.Join(",", names);
            bool Given(Option o) => r.GetResult(o) is { Implicit: false };
            bool refused = false;
            void Refuse(string message) { r.AddError(message); refused = true; }
            foreach (var (o, setting) in All())
                if (Given(o))
                    foreach (var d in chosen)
                        if (d.Refuses(setting) is { } why) Refuse($"{o.Name}: {why}");
            foreach (var (o, setting) in Refusable())
                if (o is not null && Given(o) && !chosen.Any(d => d.Uses.HasFlag(setting)))
                    Refuse($"{o.Name}: none of the methods {list} uses it (only {Users(setting)})");
            foreach (var (p, o) in Parameters)
                if (Given(o) && !chosen.Any(d => d.Parameters.Any(q => q.Name == p.Name)))
                    Refuse($"{o.Name}: none of the methods {list} uses it (only {string.Join(", ", AttributionMethods.All.Where(d => d.Parameters.Any(q => q.Name == p.Name)).Select(d => d.Name))})");
            if (refused) return;
            var settings = Read(new ResultValues(r));
            foreach (var d in chosen)
                if (d.Check(settings) is { } why) r.AddError(why);
        });
    }

    public MethodSettings Read(ParseResult p) => Read(new ParseValues(p));

    MethodSettings Read(IValues v)
    {
        var s = new MethodSettings
        {
            Measure = Measure is not null && v.Get(Measure) == "margin" ? QueryMeasurement.Margin : QueryMeasurement.Loss,
            MeasureGiven = Measure is not null && v.Given(Measure),
            Damping = Damping is null ? null : v.Get(Damping),
            Layers = v.Get(Layers),
            TrainBatchSize = v.Get(BatchSize),
            Seed = v.Get(Seed),
            Ensemble = v.Get(Ensemble),
            Members = v.Get(Members) is { } ms ? ms.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : Array.Empty<string>(),
            MemberEpochs = (v.Get(MemberEpochs) ?? "last").Replace(" ", "", StringComparison.Ordinal),
            ProjectionDim = v.Get(ProjDim),
            Layout = v.Get(ProjLayout) switch { "dense" => ProjectionLayout.Dense, "hadamard" => ProjectionLayout.Hadamard, _ => ProjectionLayout.Kronecker },
            Hvp = Hvp?.Read(v),
            IfEpochs = IfEpochs is null ? "last" : (v.Get(IfEpochs) ?? "last").Replace(" ", "", StringComparison.Ordinal),
            Fisher = Fisher is not null && v.Get(Fisher) == "empirical" ? FisherType.Empirical : FisherType.True,
        };
        foreach (var (p, o) in Parameters)
            if (v.Given(o) && v.Get(o) is { } text) s = s.WithParameter(p.Name, text);
        return s;
    }
}

/// <summary>Option values from a parse result, or (in a validator) from a command result where an
/// option that failed to parse reads as its default.</summary>
internal interface IValues
{
    T? Get<T>(Option<T> o);
    bool Given(Option o);
}

sealed class ParseValues(ParseResult p) : IValues
{
    public T? Get<T>(Option<T> o) => p.GetValue(o);
    public bool Given(Option o) => p.GetResult(o) is { Implicit: false };
}

sealed class ResultValues(System.CommandLine.Parsing.CommandResult r) : IValues
{
    public T? Get<T>(Option<T> o) => Opt.ValueIfValid(r, o);
    public bool Given(Option o) => r.GetResult(o) is { Implicit: false };
}

/// <summary>Settings of the Hessian-vector-product influence functions; which methods use each comes
/// from the registry.</summary>
internal sealed class HvpOptionSet
{
    static readonly HvpSolverOptions D = new();
    static string U(MethodOption o) => MethodSettingOptions.Users(o);

    public Option<string> Hessian { get; } = Opt.Choice("--hessian", $"{U(MethodOption.Hessian)}: curvature to invert: true (the Hessian, by double backward) or gauss-newton (J^T H_out J, positive semi-definite)", "true", "true", "gauss-newton");
    public Option<double> L2 { get; } = Opt.Double("--l2", $"{U(MethodOption.L2)}: L2 coefficient of the training objective, adds L2 x I to the curvature (use the weight decay the model was trained with; a run trained with --lbfgs-tol uses its weight decay unless --l2 is given)", D.L2, 0);
    public Option<double> CgTol { get; } = Opt.Double("--cg-tol", $"{U(MethodOption.CgTolerance)}: relative residual at which a right-hand side has converged", D.CgTolerance, 0, minOpen: true);
    public Option<int> CgIters { get; } = Opt.Int("--cg-iters", $"{U(MethodOption.CgIterations)}: iteration cap", D.CgMaxIterations, 1);
    public Option<int?> LissaDepth { get; } = Opt.OptionalInt("--lissa-depth", $"{U(MethodOption.LissaDepth)}: recursion depth [default: tuned: enough for 1% error in the slowest direction, at most 5000]", 1);
    public Option<double?> LissaScale { get; } = Opt.OptionalDouble("--lissa-scale", $"{U(MethodOption.LissaScale)}: scale s (must exceed the largest eigenvalue of H + damping) [default: tuned: 1.5 x (largest eigenvalue estimate + damping)]", 0, minOpen: true);
    public Option<int> LissaReps { get; } = Opt.Int("--lissa-reps", $"{U(MethodOption.LissaRepetitions)}: repetitions averaged", D.LissaRepetitions, 1);
    public Option<int?> LissaBatch { get; } = Opt.OptionalInt("--lissa-batch", $"{U(MethodOption.LissaBatchSize)}: training examples per stochastic HVP [default: tuned: 4 x trace / largest eigenvalue of the curvature]", 1);
    public Option<int> ArnoldiIters { get; } = Opt.Int("--arnoldi-iters", $"{U(MethodOption.ArnoldiIterations)}: Arnoldi iterations (HVPs)", D.ArnoldiIterations, 1);
    public Option<int> ArnoldiTopK { get; } = Opt.Int("--arnoldi-topk", $"{U(MethodOption.ArnoldiTopK)}: eigenpairs kept (at most --arnoldi-iters)", D.ArnoldiTopK, 1, helpName: "K");

    /// <summary>Each option with the setting it sets.</summary>
    public IEnumerable<(Option? Option, MethodOption Setting)> Settings => new (Option?, MethodOption)[]
    {
        (Hessian, MethodOption.Hessian), (L2, MethodOption.L2), (CgTol, MethodOption.CgTolerance), (CgIters, MethodOption.CgIterations),
        (LissaDepth, MethodOption.LissaDepth), (LissaScale, MethodOption.LissaScale), (LissaReps, MethodOption.LissaRepetitions), (LissaBatch, MethodOption.LissaBatchSize),
        (ArnoldiIters, MethodOption.ArnoldiIterations), (ArnoldiTopK, MethodOption.ArnoldiTopK),
    };

    public void AddTo(Command c)
    {
        foreach (var (o, _) in Settings) c.Add(o!);
        c.Validators.Add(r =>
        {
            if (Opt.ValueIfValid(r, ArnoldiTopK) is var k && Opt.ValueIfValid(r, ArnoldiIters) is var it && k > it && it > 0)
                r.AddError($"--arnoldi-topk {k}: at most --arnoldi-iters ({it})");
        });
    }

    internal HvpSettings Read(IValues v) => new(
        v.Get(Hessian) == "gauss-newton" ? HessianKind.GaussNewton : HessianKind.True, v.Get(L2),
        v.Get(CgTol), v.Get(CgIters), v.Get(LissaDepth), v.Get(LissaScale), v.Get(LissaReps), v.Get(LissaBatch),
        v.Get(ArnoldiIters), v.Get(ArnoldiTopK)) { L2Given = v.Given(L2), HessianGiven = v.Given(Hessian) };
}

/// <summary>Queries, the same everywhere: --queries test|train, --query I,J,... or --query-count N.</summary>
internal sealed class QueryOptions
{
    public Option<string> Set { get; } = Opt.Choice("--queries", "the query set", "test", "test", "train");
    public Option<int[]> Indices { get; } = Opt.IntList("--query", "query indices in the query set", null, 0, helpName: "I,J,...");
    public Option<int?> Count { get; }

    public QueryOptions(int? defaultCount)
    {
        Count = Opt.OptionalInt("--query-count", $"the first N examples of the query set{(defaultCount is { } d ? $" [default: {d}]" : "")}", 1);
    }

    public void AddTo(Command c)
    {
        c.Add(Set); c.Add(Indices); c.Add(Count);
        c.Validators.Add(r =>
        {
            if (r.GetResult(Indices) is { Implicit: false } && r.GetResult(Count) is { Implicit: false })
                r.AddError("--query and --query-count: give one of them");
        });
    }

    public (string Set, int[]? Indices, int? Count) Read(ParseResult p) =>
        (p.GetValue(Set)!, p.GetResult(Indices) is { Implicit: false } ? p.GetValue(Indices) : null, p.GetValue(Count));
}

/// <summary>Reader options for a data set loaded afresh (train, demo, data): folded into the --data
/// spec, which the run records, so later commands rebuild the same data without them.</summary>
internal sealed class DataReaderOptions
{
    /// <summary>"imagefolder, csv": the registered data readers whose specs take an option.</summary>
    static string Readers(string key) => string.Join(", ", Data.DataReaders.All.Where(r => r.Keys.Contains(key)).Select(r => r.Prefix));

    public Option<string> ImageSize { get; } = Opt.Str("--image-size", $"{Readers("size")}: resize every image to H x W (bilinear) [default: the images' size, when they all share one]", "H[xW]");
    public Option<string> Channels { get; } = Opt.Str("--channels", $"{Readers("channels")}: 1 (grey: luminance) or 3 (RGB) [default: 1 when every image is grey, else 3]", "1|3");
    public Option<double?> TestFraction { get; } = Opt.OptionalDouble("--test-fraction", $"{Readers("test-fraction")} without a test part: fraction of each class held out as the test set (seeded) [default: 0.2]", 0, minOpen: true);
    public Option<string> TestData { get; } = Opt.Str("--test-data", $"{Readers("test")}: the test set (FILE, or tensors:FILE / csv:FILE like --data) [default: X_test/y_test in a tensors file, else a seeded split]", "SPEC");
    public Option<string> LabelColumn { get; } = Opt.Str("--label-column", $"{Readers("label")}: the label column [default: label]", "NAME");

    public DataReaderOptions()
    {
        ImageSize.Validators.Add(r =>
        {
            try { Data.DataSpec.ParseSize(r.GetValueOrDefault<string>(), "--image-size"); }
            catch (InfluenceSharpException e) { r.AddError(e.Message); }
        });
        Channels.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string>() is not ("1" or "3")) r.AddError($"--channels {r.GetValueOrDefault<string>()}: choose 1 or 3");
        });
        TestFraction.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<double?>() is { } f && !(f < 1)) r.AddError($"--test-fraction {f}: must be below 1");
        });
    }

    public void AddTo(Command c) { c.Add(ImageSize); c.Add(Channels); c.Add(TestFraction); c.Add(TestData); c.Add(LabelColumn); }

    public Data.DataOptions Read(ParseResult p) => new()
    {
        ImageSize = p.GetValue(ImageSize) is { } s ? Data.DataSpec.ParseSize(s, "--image-size") : null,
        Channels = p.GetValue(Channels) is { } c ? int.Parse(c, System.Globalization.CultureInfo.InvariantCulture) : null,
        TestFraction = p.GetValue(TestFraction),
        TestData = p.GetValue(TestData),
        LabelColumn = p.GetValue(LabelColumn),
    };
}
