using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Options shared by the attribution commands.</summary>
internal static class CommandSupport
{
    /// <summary>The checkpoint a single-checkpoint stage uses: --checkpoint FILE (a path, or a file
    /// name inside the run directory) or, by default, the run's last checkpoint.</summary>
    public static Checkpoint ResolveCheckpoint(string runDir, string? checkpoint)
    {
        if (!Directory.Exists(runDir)) throw new InfluenceSharpException($"--run {runDir}: no such run directory");
        if (checkpoint is null) return Checkpoint.List(runDir)[^1];
        if (File.Exists(checkpoint)) return Checkpoint.Open(checkpoint);
        if (File.Exists(Path.Combine(runDir, checkpoint))) return Checkpoint.Open(Path.Combine(runDir, checkpoint));
        throw new InfluenceSharpException($"--checkpoint {checkpoint}: no such checkpoint file (as given or in {runDir})");
    }

    /// <summary>The queries: --query indices, else the first --query-count (default defaultCount) of the set.</summary>
    public static (LabeledDataset Queries, int[] Indices, string Set) Queries(RunData data, string set, int[]? indices, int? count, int defaultCount = 100)
    {
        var source = set == "train" ? data.Train : data.Test;
        int[] idx = indices ?? Enumerable.Range(0, Math.Min(count ?? defaultCount, source.Count)).ToArray();
        foreach (var i in idx)
            if (i < 0 || i >= source.Count) throw new UsageException($"--query {i}: outside the {set} set (0..{source.Count - 1})");
        if (idx.Length == 0) throw new UsageException("no queries selected");
        return (source.Subset(idx, $"{set}-queries"), idx, set);
    }

    public static void PrintProfile(Profiler p, bool quiet = false)
    {
        if (quiet) return;
        Console.Error.WriteLine();
        Console.Error.Write(p.Table());
    }
}
