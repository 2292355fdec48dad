using System.Globalization;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods;

/// <summary>The settings of <see cref="MethodSettings"/> a method may use.</summary>
[Flags]
public enum MethodOption : long
{
    None = 0,
    Measure = 1L << 0, Damping = 1L << 1, Layers = 1L << 2, TrainBatchSize = 1L << 3, Seed = 1L << 4,
    Ensemble = 1L << 5, Members = 1L << 6, MemberEpochs = 1L << 7, ProjectionDim = 1L << 8, ProjectionLayout = 1L << 9,
    IfEpochs = 1L << 10, Fisher = 1L << 11,
    Hessian = 1L << 12, L2 = 1L << 13, CgTolerance = 1L << 14, CgIterations = 1L << 15,
    LissaDepth = 1L << 16, LissaScale = 1L << 17, LissaRepetitions = 1L << 18, LissaBatchSize = 1L << 19,
    ArnoldiIterations = 1L << 20, ArnoldiTopK = 1L << 21,
}

/// <summary>Where a method is the default choice.</summary>
[Flags]
public enum MethodRole
{
    None = 0,
    /// <summary>Pairwise attribution of queries (explain, LDS, removal, curation).</summary>
    Attribution = 1,
    /// <summary>Self-influence ranking (mislabel detection).</summary>
    Detection = 2,
    /// <summary>The methods the demo runs.</summary>
    Demo = 4,
    /// <summary>Ranking for curation by a group objective (d3m, worst-group, one group).</summary>
    GroupCuration = 8,
    /// <summary>Proponents and opponents on demand in the explorer (fast for one query at a time).</summary>
    Explorer = 16,
}

/// <summary>How a method parameter's text is read: a number, an integer, free text, or a number or
/// the word <see cref="MethodParameter.Auto"/>.</summary>
public enum MethodParameterKind { Double, Int, Text, NumberOrAuto }

/// <summary>A setting of a method's own (beyond <see cref="MethodSettings"/>): the command line offers
/// it as --NAME on every command that takes methods and refuses it when no chosen method uses it.</summary>
/// <param name="Name">lower-case-with-hyphens, unique across methods unless they share its meaning.</param>
/// <param name="Description">help text.</param>
/// <param name="Default">invariant text of the default value.</param>
/// <param name="Kind">how the value is parsed.</param>
/// <param name="Min">smallest value allowed (numbers).</param>
/// <param name="Max">largest value allowed (numbers).</param>
public sealed record MethodParameter(string Name, string Description, string Default, MethodParameterKind Kind = MethodParameterKind.Double,
    double? Min = null, double? Max = null)
{
    /// <summary>The value of a <see cref="MethodParameterKind.NumberOrAuto"/> parameter that lets the method choose.</summary>
    public const string Auto = "auto";

    /// <summary>Null when <paramref name="text"/> is a valid value, else why not.</summary>
    public string? Validate(string text)
    {
        double v;
        switch (Kind)
        {
            case MethodParameterKind.NumberOrAuto:
                if (text == Auto) return null;
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out v) || !double.IsFinite(v)) return $"--{Name} {text}: expected a finite number or '{Auto}'";
                break;
            case MethodParameterKind.Int:
                if (!int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int i)) return $"--{Name} {text}: expected an integer";
                v = i; break;
            case MethodParameterKind.Double:
                if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out v) || !double.IsFinite(v)) return $"--{Name} {text}: expected a finite number";
                break;
            default: return null;
        }
        if (Min is { } lo && v < lo) return FormattableString.Invariant($"--{Name} {text}: must be at least {lo}");
        if (Max is { } hi && v > hi) return FormattableString.Invariant($"--{Name} {text}: must be at most {hi}");
        return null;
    }
}

/// <summary>What a method's builder may use besides the run and the settings: where to time stages,
/// report progress and tell the user what it does (all optional: null = silent).</summary>
public sealed record MethodContext(Profiler? Profiler = null, IProgress<ProgressUpdate>? Progress = null, Action<string>? Log = null)
{
    public static readonly MethodContext Silent = new();
}

/// <summary>
/// One attribution method as users choose it by name: what it is called, which settings it uses and
/// their defaults, what it can do (feature store, index), how its results are labelled, and how it is
/// built for a training run. Every command, and <see cref="AttributionMethods.Create"/>, goes through
/// the descriptor, so a new method is one new descriptor class (plus its implementation):
/// <see cref="AttributionMethods"/> finds the library's descriptors by reflection, and another
/// assembly's by <see cref="AttributionMethods.Register"/>.
/// </summary>
public abstract class MethodDescriptor
{
    /// <summary>The name users type (--methods NAME), used in every output and manifest.</summary>
    public abstract string Name { get; }

    /// <summary>Listing order (lower first; the library's methods use 10..1000).</summary>
    public virtual int Order => 10000;

    /// <summary>The settings of <see cref="MethodSettings"/> this method uses; the command line refuses
    /// the refusable ones (damping, checkpoints summed, Fisher, ensemble members, HVP settings) when no
    /// chosen method uses them.</summary>
    public abstract MethodOption Uses { get; }

    /// <summary>Settings of this method's own, with their defaults.</summary>
    public virtual IReadOnlyList<MethodParameter> Parameters => Array.Empty<MethodParameter>();

    /// <summary>The built method is a <see cref="FeatureMethod"/> (training-set features in a store).</summary>
    public virtual bool IsFeatureMethod => false;

    /// <summary>Its scores are inner products of stored rows, so an index can search them.</summary>
    public virtual bool IsIndexable => false;

    /// <summary>A note shown when this method's store is indexed or searched approximately (null: none).</summary>
    public virtual string? IndexNote => null;

    /// <summary>Where this method is the default choice.</summary>
    public virtual MethodRole DefaultFor => MethodRole.None;

    /// <summary>Why this method is known to rank curation's group objectives (d3m, worst-group, one
    /// group) the wrong way, shown as a warning when it is chosen for one; null: not known to.</summary>
    public virtual string? GroupObjectiveWarning => null;

    /// <summary>What damping 'heuristic' (not given) means for this method (help text); null when the
    /// method is not damped.</summary>
    public virtual string? DampingHeuristic => null;

    /// <summary>Why the given option cannot be used with this method (null: it can, or it is merely
    /// unused). E.g. a method fixed to the last layer refuses a layer filter.</summary>
    public virtual string? Refuses(MethodOption option) => null;

    /// <summary>Why these settings cannot work for this method, known before any work (null: fine).</summary>
    public virtual string? Check(MethodSettings settings) => null;

    /// <summary>The name with the settings that make it another method (summed checkpoints, empirical
    /// Fisher, another projection layout), for tables and file names.</summary>
    public virtual string Label(MethodSettings settings) => Name;

    /// <summary>The label of an evaluation's result row, which may depend on what was built (e.g. the
    /// number of ensemble members).</summary>
    public virtual string ResultLabel(MethodSettings settings, IAttributionMethod built) => Label(settings);

    /// <summary>Builds the method for a run with these settings.</summary>
    public abstract IAttributionMethod Build(Run run, MethodSettings settings, MethodContext context);

    /// <summary>Where a feature method keeps its training-set features for reuse (null = in memory):
    /// RUN_DIR/store/NAME-measure-layers-layout-seed.</summary>
    protected static string? StoreDirectory(Run run, string name, MethodSettings s) =>
        s.UseStore ? Path.Combine(run.Dir, "store", $"{name}-{s.Measure.ToString().ToLowerInvariant()}-{s.Layers ?? "all"}-{s.Layout.ToString().ToLowerInvariant()}{s.ProjectionDim}-{s.Seed}") : null;

    /// <summary>"-dense2048" or "-hadamard2048" for a projected method with another layout than the
    /// default Kronecker one; empty otherwise.</summary>
    protected static string LayoutSuffix(MethodSettings s) =>
        s.Layout != Features.ProjectionLayout.Kronecker ? $"-{s.Layout.ToString().ToLowerInvariant()}{s.ProjectionDim}" : "";

    public override string ToString() => Name;
}
