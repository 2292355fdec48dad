using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Options shared by the attribution commands.</summary>
internal static class CommandSupport
{
    /// <summary>--checkpoint FILE.safetensors, or a run directory (its last checkpoint).</summary>
    public static Checkpoint ResolveCheckpoint(string path)
    {
        if (Directory.Exists(path)) return Checkpoint.List(path)[^1];
        if (!File.Exists(path)) throw new InfluenceSharpException($"--checkpoint {path}: no such file or run directory");
        return Checkpoint.Open(path);
    }

    public static QueryMeasurement Measure(Args a) => a.Str("measure", "loss") switch
    {
        "loss" => QueryMeasurement.Loss,
        "margin" => QueryMeasurement.Margin,
        var s => throw new UsageException($"--measure {s}: choose loss or margin"),
    };

    /// <summary>--queries test|train (default test), --query-indices i,j,... or --query-count N (first N).</summary>
    public static (ImageDataset Queries, int[] Indices, string Set) Queries(Args a, RunData data, int defaultCount = 100)
    {
        string set = a.Str("queries", "test");
        var source = set switch
        {
            "test" => data.Test,
            "train" => data.Train,
            _ => throw new UsageException($"--queries {set}: choose test or train"),
        };
        int[] idx = a.Has("query-indices")
            ? a.IntList("query-indices", Array.Empty<int>())
            : Enumerable.Range(0, Math.Min(a.Int("query-count", defaultCount), source.Count)).ToArray();
        foreach (var i in idx)
            if (i < 0 || i >= source.Count) throw new UsageException($"--query-indices: {i} is outside the {set} set (0..{source.Count - 1})");
        if (idx.Length == 0) throw new UsageException("no queries selected");
        return (source.Subset(idx, $"{set}-queries"), idx, set);
    }

    public static Shard ShardOf(Args a) => a.Str("shard") is { } s ? Shard.Parse(s) : Shard.All;

    public static void PrintProfile(Profiler p)
    {
        Console.Error.WriteLine();
        Console.Error.Write(p.Table());
    }
}
