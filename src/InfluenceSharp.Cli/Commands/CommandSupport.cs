using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
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
        ReadLocks.Run(runDir);
        if (checkpoint is not null && File.Exists(checkpoint)) ReadLocks.Run(checkpoint);
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

    /// <summary>The files and folders a --data spec (and --test-data) reads, for the refusal of an
    /// input that --overwrite would delete.</summary>
    public static List<(string Option, string Path)> DataInputs(string spec, DataOptions? options)
    {
        var found = new List<(string, string)>();
        DataSpec parsed;
        try { parsed = DataSpec.Parse(spec); }
        catch (InfluenceSharpException) { return found; }
        foreach (var p in new[] { parsed.Path, parsed["x"], parsed["y"], parsed["test"], options?.TestData })
            if (p is not null && (File.Exists(p) || Directory.Exists(p))) found.Add(("--data", p));
        return found;
    }

    /// <summary>The ending shared by the commands that attribute a run with methods (curate,
    /// detect-mislabeled, evaluate lds and remove): the method settings (refused when no chosen method
    /// uses one), the run's --data and the compute options; the action applies the compute options
    /// and receives --run and whether --quiet was given.</summary>
    public static void AddRunMethodAction(Command cmd, Option<string> run, Option<string[]> methods, MethodSettingOptions ms, Option<string> data,
        ComputeOptions compute, Func<ParseResult, string, bool, int> action)
    {
        ms.AddTo(cmd);
        ms.RefuseUnused(cmd, methods);
        cmd.Add(data);
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            return action(p, p.GetValue(run)!, quiet);
        });
    }

    public static void PrintProfile(Profiler p, bool quiet = false)
    {
        if (quiet) return;
        Console.Error.WriteLine();
        Console.Error.Write(p.Table());
    }
}
