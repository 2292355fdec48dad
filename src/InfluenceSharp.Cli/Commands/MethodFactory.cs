using System.Runtime.CompilerServices;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Builds any registered attribution method by name for a training run (see
/// <see cref="AttributionMethods"/>), so that detection, explain, the evaluations and the demo treat
/// every method alike; a method built once for a run and settings is reused within the process.</summary>
internal static class MethodFactory
{
    static readonly ConditionalWeakTable<Run, Dictionary<string, IAttributionMethod>> built = new();

    /// <summary>Every registered method's name, in listing order.</summary>
    public static string[] Names => AttributionMethods.Names.ToArray();

    /// <summary>The methods that are the default for a role, comma separated.</summary>
    public static string Defaults(MethodRole role) =>
        string.Join(",", AttributionMethods.All.Where(d => d.DefaultFor.HasFlag(role)).Select(d => d.Name));

    /// <summary>The feature methods (training-set features in RUN_DIR/store).</summary>
    public static string[] FeatureMethods => AttributionMethods.All.Where(d => d.IsFeatureMethod).Select(d => d.Name).ToArray();

    /// <summary>The methods whose store an index can search.</summary>
    public static string[] IndexMethods => AttributionMethods.All.Where(d => d.IsIndexable).Select(d => d.Name).ToArray();

    public static IAttributionMethod Create(string name, Run run, MethodSettings s, Profiler profiler, bool quiet = false)
    {
        CheckMeasure(run, s);
        var cache = built.GetOrCreateValue(run);
        string key = $"{name}|{s.Key()}";
        if (cache.TryGetValue(key, out var cached)) return cached;
        var context = new MethodContext(profiler, quiet ? null : new ConsoleProgress(), quiet ? null : Console.Error.WriteLine);
        return cache[key] = AttributionMethods.Create(name, run, s, context);
    }

    /// <summary>Refuses an explicit --measure on a run whose task has its own measurement (a language model).</summary>
    public static void CheckMeasure(Run run, MethodSettings s)
    {
        if (s.MeasureGiven && RunTask.IsText(run)) throw new UsageException(RunTask.MeasureRefusal(s));
    }

    /// <summary>The methods built so far for a run (to release them when it closes).</summary>
    public static IReadOnlyList<IAttributionMethod> Built(Run run) =>
        built.TryGetValue(run, out var cache) ? cache.Values.ToList() : new List<IAttributionMethod>();

    /// <summary>The method's name with the settings that make it another method (summed checkpoints,
    /// empirical Fisher, another projection layout), for tables and file names: e.g. ekfac-epochs-all-empirical.</summary>
    public static string Label(string name, MethodSettings s) => AttributionMethods.Get(name).Label(s);

    /// <summary>An evaluation's row label for a built method (e.g. with the ensemble's size).</summary>
    public static string ResultLabel(string name, MethodSettings s, IAttributionMethod method) => AttributionMethods.Get(name).ResultLabel(s, method);

    /// <summary>The note shown when a method's store is indexed or searched (null: none).</summary>
    public static string? IndexNote(string name) => AttributionMethods.Find(name)?.IndexNote;
}
