using InfluenceSharp.Runs;

namespace InfluenceSharp.Cli.Commands;

/// <summary>How the commands open a training run (<see cref="Run"/>): its directory and every member
/// run read on its behalf are locked for reading until the command ends, and a poorly trained run
/// draws a warning.</summary>
internal static class RunContext
{
    /// <summary>--run RUN_DIR (all checkpoints) or a single checkpoint file.</summary>
    public static Run Load(string path, string? dataOverride)
    {
        var run = Run.Open(path, dataOverride, ReadLocks.Run);
        WarnIfPoorlyTrained(run);
        return run;
    }

    /// <summary>Whether this command line was given --quiet (set by <see cref="CommandLine.ComputeOptions.Apply"/>).</summary>
    internal static readonly AsyncLocal<bool> Quiet = new();

    /// <summary>Attribution of an under-trained or unstably trained model is unreliable: a warning on
    /// stderr saying what to do (not with --quiet).</summary>
    static void WarnIfPoorlyTrained(Run run)
    {
        if (Quiet.Value || run.Health is not { Advice: { } advice } h) return;
        Console.Error.WriteLine($"warning: {run.Dir}: {advice} ({h.Describe()})");
    }
}
