using System.Diagnostics;

namespace InfluenceSharp.Reporting;

/// <summary>A progress line on stderr: done/total, rate, ETA and a caller-supplied suffix. On a
/// terminal it redraws in place; when stderr is redirected (CI, logs) it prints a line at most every
/// few seconds and one at the end.</summary>
public sealed class ProgressBar : IDisposable
{
    private readonly string label, unit;
    private readonly long total;
    private readonly Stopwatch sw = Stopwatch.StartNew();
    private readonly bool interactive = !Console.IsErrorRedirected;
    private double lastPrint = -1;
    private long done;
    private string suffix = "";
    private bool finished;

    public ProgressBar(string label, long total, string unit = "ex")
    {
        this.label = label; this.total = total; this.unit = unit;
    }

    public double Elapsed => sw.Elapsed.TotalSeconds;

    public void Update(long done, string? suffix = null)
    {
        this.done = done;
        if (suffix is not null) this.suffix = suffix;
        double t = sw.Elapsed.TotalSeconds;
        double every = interactive ? 0.2 : 5.0;
        if (t - lastPrint < every && done < total) return;
        lastPrint = t;
        Print(done >= total);
    }

    private void Print(bool final)
    {
        double t = Math.Max(sw.Elapsed.TotalSeconds, 1e-9);
        double rate = done / t;
        double eta = rate > 0 ? (total - done) / rate : double.NaN;
        int width = 24;
        int filled = total > 0 ? (int)(width * Math.Min(1.0, (double)done / total)) : width;
        string bar = new string('#', filled) + new string('.', width - filled);
        string line = $"{label} [{bar}] {done}/{total} {unit} {rate:F0} {unit}/s " +
                      (final ? $"{t:F1}s" : $"ETA {FormatSeconds(eta)}") + (suffix.Length > 0 ? " " + suffix : "");
        if (interactive) Console.Error.Write("\r" + line.PadRight(Math.Min(Console.BufferWidth > 0 ? Console.BufferWidth - 1 : 120, 160)) + (final ? "\n" : ""));
        else Console.Error.WriteLine(line);
        if (final) finished = true;
    }

    static string FormatSeconds(double s) => double.IsNaN(s) || double.IsInfinity(s) ? "?" :
        s < 60 ? $"{s:F0}s" : s < 3600 ? $"{(int)s / 60}m{(int)s % 60:D2}s" : $"{(int)s / 3600}h{(int)s % 3600 / 60:D2}m";

    public void Dispose()
    {
        if (!finished && done > 0) Print(true);
        finished = true;
    }
}
