using System.Collections.Immutable;
using System.Globalization;
using InfluenceSharp.Features;
using InfluenceSharp.Methods.InfluenceFunctions;

namespace InfluenceSharp.Methods;

/// <summary>Settings every method understands; a method ignores those it does not use (its
/// <see cref="MethodDescriptor.Uses"/> says which). Methods with settings of their own declare them as
/// <see cref="MethodDescriptor.Parameters"/> and read them with <see cref="Parameter"/>.</summary>
public sealed record MethodSettings
{
    public QueryMeasurement Measure { get; init; } = QueryMeasurement.Loss;
    /// <summary>The measurement was chosen explicitly (--measure): a task with a measurement of its own
    /// (a language model's) refuses it rather than ignore it. Not part of <see cref="Key"/>.</summary>
    public bool MeasureGiven { get; init; }
    /// <summary>Absolute damping; null = the method's default rule (see <see cref="DampingDefaults"/>).</summary>
    public double? Damping { get; init; }
    /// <summary>Track only layers whose names contain one of these (comma separated); null = all.</summary>
    public string? Layers { get; init; }
    /// <summary>Training examples per attribution batch (the command line's --batch-size).</summary>
    public int TrainBatchSize { get; init; } = 256;
    public int Seed { get; init; }
    /// <summary>TRAK: number of independently trained models (the run's model plus N−1 retrained with
    /// other seeds, cached under RUN_DIR/ensemble).</summary>
    public int Ensemble { get; init; } = 1;
    /// <summary>TRAK: other runs (run directories or checkpoint files) whose models join the run's as
    /// ensemble members.</summary>
    public IReadOnlyList<string> Members { get; init; } = Array.Empty<string>();
    /// <summary>TRAK: which checkpoints of the run and of each member run are members: last, all or E,F,...</summary>
    public string MemberEpochs { get; init; } = "last";
    /// <summary>Projection dimension for TRAK and projected TracIn (dense and Hadamard layouts).</summary>
    public int ProjectionDim { get; init; } = 2048;
    /// <summary>Kronecker (default: projects each layer's output gradient and input separately,
    /// milliseconds per batch on a CPU), dense (the reference TRAK projection of the whole gradient) or
    /// Hadamard.</summary>
    public ProjectionLayout Layout { get; init; } = ProjectionLayout.Kronecker;
    /// <summary>Settings of the Hessian-vector-product influence functions (null = the library's defaults).</summary>
    public HvpSettings? Hvp { get; init; }
    /// <summary>Factored influence functions: checkpoints whose scores are summed (weighted by step
    /// size): last (the run's final model alone), all, or E,F,...</summary>
    public string IfEpochs { get; init; } = "last";
    /// <summary>Factored influence functions: true or empirical Fisher.</summary>
    public FisherType Fisher { get; init; } = FisherType.True;
    /// <summary>Keep method features in RUN_DIR/store so later calls reuse them.</summary>
    public bool UseStore { get; init; } = true;

    // Method-specific parameters by name (see Key).
    ImmutableSortedDictionary<string, string> parameters = ImmutableSortedDictionary<string, string>.Empty.WithComparers(StringComparer.Ordinal);

    /// <summary>The given method-specific parameters (name → invariant text), in name order (a method,
    /// not a property, so that the record's generated text stays that of the common settings).</summary>
    public IReadOnlyDictionary<string, string> GivenParameters() => parameters;

    /// <summary>A copy with a method-specific parameter set (see <see cref="MethodDescriptor.Parameters"/>).</summary>
    public MethodSettings WithParameter(string name, string value)
    {
        var copy = this with { };
        copy.parameters = parameters.SetItem(name, value);
        return copy;
    }

    /// <summary>A method-specific parameter's text: the given one, else <paramref name="fallback"/>.</summary>
    public string? Parameter(string name, string? fallback = null) => parameters.TryGetValue(name, out var v) ? v : fallback;

    /// <summary>A method-specific parameter as a number (given, else the descriptor's default).</summary>
    public double ParameterDouble(MethodParameter p) => double.Parse(Parameter(p.Name, p.Default)!, NumberStyles.Float, CultureInfo.InvariantCulture);

    /// <summary>A method-specific parameter as an integer (given, else the descriptor's default).</summary>
    public int ParameterInt(MethodParameter p) => int.Parse(Parameter(p.Name, p.Default)!, NumberStyles.Integer, CultureInfo.InvariantCulture);

    /// <summary>Identifies these settings completely (common settings, members and parameters): the
    /// text stored in manifests and used to cache a built method. Written out field by field and
    /// culture-invariant, so that it does not change with the record's shape or the machine's culture.</summary>
    public string Key()
    {
        var inv = CultureInfo.InvariantCulture;
        var parts = new List<string>
        {
            $"measure={Measure}", $"damping={(Damping is { } d ? d.ToString("R", inv) : "default")}", $"layers={Layers ?? "all"}",
            $"batch-size={TrainBatchSize.ToString(inv)}", $"seed={Seed.ToString(inv)}", $"ensemble={Ensemble.ToString(inv)}",
            $"members={string.Join(",", Members)}", $"member-epochs={MemberEpochs}", $"proj-dim={ProjectionDim.ToString(inv)}",
            $"proj-layout={Layout}", $"if-epochs={IfEpochs}", $"fisher={Fisher}", $"store={UseStore}",
        };
        if (Hvp is { } h) parts.Add(h.Key());
        parts.AddRange(parameters.Select(p => $"{p.Key}={p.Value}"));
        return string.Join(";", parts);
    }
}

/// <summary>Settings of the Hessian-vector-product influence functions (see <see cref="HvpSolverOptions"/>).</summary>
/// <remarks>LiSSA's depth, scale and batch size: null = tuned from the curvature's top eigenvalue and trace.</remarks>
public sealed record HvpSettings(HessianKind Hessian, double L2, double CgTolerance, int CgIterations, int? LissaDepth, double? LissaScale,
    int LissaRepetitions, int? LissaBatchSize, int ArnoldiIterations, int ArnoldiTopK)
{
    static readonly HvpSolverOptions D = new();
    public static readonly HvpSettings Default = new(D.Hessian, D.L2, D.CgTolerance, D.CgMaxIterations, D.LissaDepth, D.LissaScale,
        D.LissaRepetitions, D.LissaBatchSize, D.ArnoldiIterations, D.ArnoldiTopK);
    /// <summary>L2 was given (else a run trained to convergence by L-BFGS supplies its weight decay).</summary>
    public bool L2Given { get; init; }
    /// <summary>The curvature kind was given (else ekfac-astra uses the Gauss-Newton matrix, which EK-FAC approximates).</summary>
    public bool HessianGiven { get; init; }

    /// <summary>Every field, culture-invariant (part of <see cref="MethodSettings.Key"/>).</summary>
    public string Key()
    {
        var inv = CultureInfo.InvariantCulture;
        string N(double? v) => v is { } x ? x.ToString("R", inv) : "tuned";
        string I(int? v) => v is { } x ? x.ToString(inv) : "tuned";
        return $"hessian={Hessian}{(HessianGiven ? "" : "(default)")};l2={L2.ToString("R", inv)}{(L2Given ? "" : "(default)")};cg-tol={CgTolerance.ToString("R", inv)};" +
            $"cg-iters={CgIterations.ToString(inv)};lissa-depth={I(LissaDepth)};lissa-scale={N(LissaScale)};lissa-reps={LissaRepetitions.ToString(inv)};" +
            $"lissa-batch={I(LissaBatchSize)};arnoldi-iters={ArnoldiIterations.ToString(inv)};arnoldi-topk={ArnoldiTopK.ToString(inv)}";
    }
}
