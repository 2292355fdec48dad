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

/// <summary>Settings every attribution method understands (a method ignores those it does not use).</summary>
internal sealed class MethodSettingOptions
{
    public Option<string>? Measure { get; }
    public Option<double?>? Damping { get; }
    public Option<string> Layers { get; } = Opt.Str("--layers", "track only layers whose names contain one of these (comma separated) [default: all Linear/Conv2d]", "NAMES");
    public Option<int> BatchSize { get; } = Opt.Int("--batch-size", "training examples per batch", 256, 1);
    public Option<int> Seed { get; } = Opt.Int("--seed", "seeds sampled labels (true Fisher) and random projections", 0, 0);
    public Option<int> Ensemble { get; } = Opt.Int("--ensemble", "trak: independently trained models (the run's plus N-1 retrained with other seeds, cached in RUN_DIR/ensemble)", 1, 1, 1000);
    public Option<string> Members { get; } = Opt.Str("--members", "trak: ensemble members from runs you trained: other runs (RUN_DIR or checkpoint file, comma separated; same training data and architecture) whose models join --run's", "RUN,...");
    public Option<string> MemberEpochs { get; } = Opt.Str("--member-epochs", "trak: which checkpoints of --run and of each --members run are ensemble members: last, all, or epochs E,F,...", "last|all|E,...", fallback: "last");
    public Option<int> ProjDim { get; } = Opt.Int("--proj-dim", "trak, tracin-proj: projection dimension", 2048, 1, 1 << 24, "K");
    public Option<string> ProjLayout { get; } = Opt.Choice("--proj-layout", "trak, tracin-proj: kronecker (per-layer projections, fast on a CPU), dense (the reference TRAK projection) or hadamard (a subsampled randomised Hadamard transform of the whole gradient: O(p log p) per example, no matrix stored)", "kronecker", "kronecker", "dense", "hadamard");

    // Hessian-vector-product influence functions (if-explicit, if-cg, if-lissa, if-arnoldi); null where no IF can be chosen.
    public HvpOptionSet? Hvp { get; }
    // The factored influence functions (ekfac, kfac, diagonal, identity); null where no IF can be chosen.
    public Option<string>? IfEpochs { get; }
    public Option<string>? Fisher { get; }
    public static readonly string[] FactoredMethods = { "ekfac", "ekfac-last", "kfac", "diagonal", "identity" };

    /// <param name="measure">false where the command fixes the measurement itself (evaluate lds: --target).</param>
    /// <param name="damping">false where no influence function can be chosen (build-store).</param>
    public MethodSettingOptions(bool measure = true, bool damping = true)
    {
        if (measure) Measure = Opt.Choice("--measure", "query measurement: loss or margin", "loss", "loss", "margin");
        if (damping)
        {
            Damping = Opt.Damping(); Hvp = new HvpOptionSet();
            IfEpochs = Opt.Str("--if-epochs", "ekfac, kfac, diagonal, identity: checkpoints of --run whose influence-function scores are summed, each with its own curvature and weighted by its step size (TracIn's trajectory sum): last, all, or epochs E,F,...", "last|all|E,...", fallback: "last");
            Fisher = Opt.Choice("--fisher", "ekfac, kfac, diagonal: the curvature's output gradients use labels sampled from the model (true Fisher) or the training labels (empirical Fisher)", "true", "true", "empirical");
        }
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
                try { Commands.Ensemble.ParseEpochs(r.GetValueOrDefault<string>(), "--if-epochs"); }
                catch (UsageException e) { r.AddError(e.Message); }
            });
        }
        Hvp?.AddTo(c);
        MemberEpochs.Validators.Add(r =>
        {
            try { Commands.Ensemble.ParseEpochs(r.GetValueOrDefault<string>()); }
            catch (UsageException e) { r.AddError(e.Message); }
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

    public static readonly string[] DampedMethods = { "ekfac", "ekfac-last", "kfac", "diagonal", "identity", "trak", "if-explicit", "if-cg", "if-lissa", "if-arnoldi", "ekfac-astra", "relatif", "datainf" };

    /// <summary>Refuses settings that none of the chosen methods would use (they would be silently ignored).
    /// </summary>
    public void RefuseUnused(Command c, Option<string[]> methods)
    {
        c.Validators.Add(r =>
        {
            if (r.GetResult(methods) is null) return;
            var chosen = Opt.ValueIfValid(r, methods) ?? Array.Empty<string>();   // a bad --methods has its own error
            if (chosen.Length == 0) return;
            if (r.GetResult(Layers) is { Implicit: false } && chosen.Contains("tracin-last"))
                r.AddError("--layers: tracin-last always uses the model's last Linear layer; to choose layers use --methods tracin (or tracin-proj)");
            if (r.GetResult(Layers) is { Implicit: false } && chosen.Contains("ekfac-last"))
                r.AddError("--layers: ekfac-last always uses the model's last Linear layer; to choose layers use --methods ekfac");
            foreach (var o in new Option[] { Members, MemberEpochs })
                if (r.GetResult(o) is { Implicit: false } && !chosen.Contains("trak"))
                    r.AddError($"{o.Name}: only trak uses it (chosen: {string.Join(",", chosen)})");
            if (Damping is not null && r.GetResult(Damping) is { Implicit: false } && !chosen.Any(DampedMethods.Contains))
                r.AddError($"--damping: none of the methods {string.Join(",", chosen)} uses it (only {string.Join(", ", DampedMethods)})");
            if (IfEpochs is not null && r.GetResult(IfEpochs) is { Implicit: false } && !chosen.Any(FactoredMethods.Contains))
                r.AddError($"--if-epochs: only {string.Join(", ", FactoredMethods)} use it (chosen: {string.Join(",", chosen)})");
            if (Fisher is not null && r.GetResult(Fisher) is { Implicit: false } && !chosen.Any(m => m is "ekfac" or "ekfac-last" or "kfac" or "diagonal" or "ekfac-astra" or "relatif"))
                r.AddError($"--fisher: only ekfac, kfac, diagonal, ekfac-astra, relatif use it (chosen: {string.Join(",", chosen)})");
            Hvp?.RefuseUnused(r, chosen, Damping is null ? null : Opt.ValueIfValid(r, Damping));
        });
    }

    public MethodSettings Read(ParseResult p) => new()
    {
        Measure = Measure is not null && p.GetValue(Measure) == "margin" ? QueryMeasurement.Margin : QueryMeasurement.Loss,
        Damping = Damping is null ? null : p.GetValue(Damping),
        Layers = p.GetValue(Layers),
        BatchSize = p.GetValue(BatchSize),
        Seed = p.GetValue(Seed),
        Ensemble = p.GetValue(Ensemble),
        Members = p.GetValue(Members) is { } ms ? ms.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries) : Array.Empty<string>(),
        MemberEpochs = p.GetValue(MemberEpochs)!.Replace(" ", "", StringComparison.Ordinal),
        ProjectionDim = p.GetValue(ProjDim),
        Layout = p.GetValue(ProjLayout) switch { "dense" => ProjectionLayout.Dense, "hadamard" => ProjectionLayout.Hadamard, _ => ProjectionLayout.Kronecker },
        Hvp = Hvp?.Read(p),
        IfEpochs = IfEpochs is null ? "last" : p.GetValue(IfEpochs)!.Replace(" ", "", StringComparison.Ordinal),
        Fisher = Fisher is not null && p.GetValue(Fisher) == "empirical" ? FisherType.Empirical : FisherType.True,
    };
}

/// <summary>Settings of the Hessian-vector-product influence functions (if-explicit, if-cg, if-lissa, if-arnoldi).</summary>
internal sealed class HvpOptionSet
{
    static readonly HvpSolverOptions D = new();
    public static readonly string[] Methods = { "if-explicit", "if-cg", "if-lissa", "if-arnoldi", "ekfac-astra" };

    public Option<string> Hessian { get; } = Opt.Choice("--hessian", "if-*: curvature to invert: true (the Hessian, by double backward) or gauss-newton (J^T H_out J, positive semi-definite)", "true", "true", "gauss-newton");
    public Option<double> L2 { get; } = Opt.Double("--l2", "if-*: L2 coefficient of the training objective, adds L2 x I to the curvature (use the weight decay the model was trained with; a run trained with --lbfgs-tol uses its weight decay unless --l2 is given)", D.L2, 0);
    public Option<double> CgTol { get; } = Opt.Double("--cg-tol", "if-cg: relative residual at which a right-hand side has converged", D.CgTolerance, 0, minOpen: true);
    public Option<int> CgIters { get; } = Opt.Int("--cg-iters", "if-cg: iteration cap", D.CgMaxIterations, 1);
    public Option<int?> LissaDepth { get; } = Opt.OptionalInt("--lissa-depth", "if-lissa: recursion depth [default: tuned: enough for 1% error in the slowest direction, at most 5000]", 1);
    public Option<double?> LissaScale { get; } = Opt.OptionalDouble("--lissa-scale", "if-lissa: scale s (must exceed the largest eigenvalue of H + damping) [default: tuned: 1.5 x (largest eigenvalue estimate + damping)]", 0, minOpen: true);
    public Option<int> LissaReps { get; } = Opt.Int("--lissa-reps", "if-lissa: repetitions averaged", D.LissaRepetitions, 1);
    public Option<int?> LissaBatch { get; } = Opt.OptionalInt("--lissa-batch", "if-lissa: training examples per stochastic HVP [default: tuned: 4 x trace / largest eigenvalue of the curvature]", 1);
    public Option<int> ArnoldiIters { get; } = Opt.Int("--arnoldi-iters", "if-arnoldi: Arnoldi iterations (HVPs)", D.ArnoldiIterations, 1);
    public Option<int> ArnoldiTopK { get; } = Opt.Int("--arnoldi-topk", "if-arnoldi: eigenpairs kept (at most --arnoldi-iters)", D.ArnoldiTopK, 1, helpName: "K");

    public Option<int> AstraSteps { get; } = Opt.Int("--astra-steps", "ekfac-astra: preconditioned CG steps on the true system after the EK-FAC solution (0 = EK-FAC alone)", new Methods.Astra.AstraOptions().Steps, 0);

    Option[] All => new Option[] { Hessian, L2, CgTol, CgIters, LissaDepth, LissaScale, LissaReps, LissaBatch, ArnoldiIters, ArnoldiTopK, AstraSteps };

    public void AddTo(Command c)
    {
        foreach (var o in All) c.Add(o);
        c.Validators.Add(r =>
        {
            if (Opt.ValueIfValid(r, ArnoldiTopK) is var k && Opt.ValueIfValid(r, ArnoldiIters) is var it && k > it && it > 0)
                r.AddError($"--arnoldi-topk {k}: at most --arnoldi-iters ({it})");
        });
    }

    /// <summary>Refuses if-* settings none of the chosen methods uses, and if-cg with the true Hessian
    /// and damping 0 (the Hessian may be indefinite).</summary>
    public void RefuseUnused(System.CommandLine.Parsing.CommandResult r, string[] chosen, double? damping)
    {
        (Option O, string[] Users)[] users =
        {
            (Hessian, Methods), (L2, Methods), (CgTol, new[] { "if-cg" }), (CgIters, new[] { "if-cg" }),
            (LissaDepth, new[] { "if-lissa" }), (LissaScale, new[] { "if-lissa" }), (LissaReps, new[] { "if-lissa" }), (LissaBatch, new[] { "if-lissa" }),
            (ArnoldiIters, new[] { "if-arnoldi" }), (ArnoldiTopK, new[] { "if-arnoldi" }), (AstraSteps, new[] { "ekfac-astra" }),
        };
        foreach (var (o, u) in users)
            if (r.GetResult(o) is { Implicit: false } && !chosen.Any(u.Contains))
                r.AddError($"{o.Name}: none of the methods {string.Join(",", chosen)} uses it (only {string.Join(", ", u)})");
        if (chosen.Contains("if-cg") && damping == 0 && Opt.ValueIfValid(r, Hessian) != "gauss-newton")
            r.AddError("--damping 0: if-cg with the true Hessian needs damping > 0 (the Hessian may be indefinite); give --damping X > 0 or --hessian gauss-newton");
    }

    public HvpSettings Read(ParseResult p) => new(
        p.GetValue(Hessian) == "gauss-newton" ? HessianKind.GaussNewton : HessianKind.True, p.GetValue(L2),
        p.GetValue(CgTol), p.GetValue(CgIters), p.GetValue(LissaDepth), p.GetValue(LissaScale), p.GetValue(LissaReps), p.GetValue(LissaBatch),
        p.GetValue(ArnoldiIters), p.GetValue(ArnoldiTopK))
    {
        L2Given = p.GetResult(L2) is { Implicit: false }, HessianGiven = p.GetResult(Hessian) is { Implicit: false }, AstraSteps = p.GetValue(AstraSteps),
    };
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
    public Option<string> ImageSize { get; } = Opt.Str("--image-size", "imagefolder: resize every image to H x W (bilinear) [default: the images' size, when they all share one]", "H[xW]");
    public Option<string> Channels { get; } = Opt.Str("--channels", "imagefolder: 1 (grey: luminance) or 3 (RGB) [default: 1 when every image is grey, else 3]", "1|3");
    public Option<double?> TestFraction { get; } = Opt.OptionalDouble("--test-fraction", "imagefolder, tensors, csv without a test part: fraction of each class held out as the test set (seeded) [default: 0.2]", 0, minOpen: true);
    public Option<string> TestData { get; } = Opt.Str("--test-data", "tensors, csv: the test set (FILE, or tensors:FILE / csv:FILE like --data) [default: X_test/y_test in a tensors file, else a seeded split]", "SPEC");
    public Option<string> LabelColumn { get; } = Opt.Str("--label-column", "csv: the label column [default: label]", "NAME");

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
