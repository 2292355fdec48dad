using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Settings every method understands (unused ones are ignored by a method).</summary>
internal sealed record MethodSettings
{
    public QueryMeasurement Measure { get; init; } = QueryMeasurement.Loss;
    public double? Damping { get; init; }
    public string? Layers { get; init; }
    public int BatchSize { get; init; } = 256;
    public int Seed { get; init; }

    public static MethodSettings From(Args a) => new()
    {
        Measure = CommandSupport.Measure(a),
        Damping = a.Str("damping") is { } d and not "heuristic" ? double.Parse(d, System.Globalization.CultureInfo.InvariantCulture) : null,
        Layers = a.Str("layers"),
        BatchSize = a.Int("batch-size", 256),
        Seed = a.Int("seed", 0),
    };
}

/// <summary>Builds any attribution method by name for a training run, so that detection, explain,
/// the evaluations and the demo treat every method alike.</summary>
internal static class MethodFactory
{
    public static readonly string[] Names = { "ekfac", "kfac", "diagonal", "identity" };
    public static readonly string[] DemoMethods = { "ekfac", "kfac", "identity" };

    public static IAttributionMethod Create(string name, RunContext run, MethodSettings s, Profiler profiler, bool quiet = false)
    {
        string key = $"{name}|{s}";
        if (run.Methods.TryGetValue(key, out var cached)) return cached;
        return run.Methods[key] = Build(name, run, s, profiler, quiet);
    }

    static IAttributionMethod Build(string name, RunContext run, MethodSettings s, Profiler profiler, bool quiet)
    {
        var task = new ClassificationTask(s.Measure);
        switch (name)
        {
            case "ekfac" or "kfac" or "diagonal" or "identity":
            {
                var model = run.Last.LoadModel();
                var fo = new FactorOptions { Strategy = InfluenceCommands.ParseStrategy(name), Layers = s.Layers, BatchSize = s.BatchSize, Seed = s.Seed, Quiet = quiet };
                var factors = new FactorFitter(model, task, fo, profiler).Fit(run.Data.Train)!;
                return new InfluenceFunction(model, task, factors, new ScoreOptions { Damping = s.Damping, TrainBatchSize = s.BatchSize, Quiet = quiet }, profiler);
            }
            default:
                throw new UsageException($"--method {name}: unknown method (choose {string.Join(", ", Names)})");
        }
    }

    public static string[] ParseList(string text)
    {
        var names = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var n in names)
            if (!Names.Contains(n)) throw new UsageException($"--method {n}: unknown method (choose {string.Join(", ", Names)})");
        return names;
    }
}
