using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence report`: one self-contained HTML page for a run, from whatever the other
/// commands left in the run directory (training, detect/, explain/, lds/, remove/).</summary>
public static class ReportCommand
{
    public static readonly string[] SectionTitles = RunReport.SectionTitles;

    public static Command Command()
    {
        var run = Opt.Run();
        var outDir = Opt.Out("where to write report.html [default: RUN_DIR]");
        var cmd = new Command("report", "one self-contained HTML page for a run (OUT/report.html): training curves, detection, explanations, LDS, removal, timings")
        {
            run, outDir,
        };
        cmd.SetAction(p =>
        {
            string runDir = p.GetValue(run)!;
            string outPath = Path.Combine(p.GetValue(outDir) ?? runDir, "report.html");
            if (!Directory.Exists(runDir)) throw new InfluenceSharpException($"--run {runDir}: no such run directory");
            Write(runDir, outPath);
            Console.WriteLine($"report: {Path.GetFullPath(outPath)}");
            return 0;
        });
        return cmd;
    }

    internal static void Write(string runDir, string outPath)
    {
        if (Directory.Exists(runDir)) ReadLocks.Run(runDir);
        RunReport.Write(runDir, outPath);
    }
}
