using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Cli;

/// <summary>Renders the library's progress updates on stderr: a bar with done/total, rate, ETA and
/// the stage's suffix. On a terminal it redraws in place (the library sends at most ~5 updates a
/// second); when stderr is redirected (CI, logs) it prints a line at most every
/// <see cref="RedirectedInterval"/> seconds per stage, and every stage's final line.</summary>
internal sealed class ConsoleProgress : IProgress<ProgressUpdate>
{
    public const double RedirectedInterval = 5.0;

    private readonly TextWriter writer;
    private readonly bool interactive;
    private readonly object gate = new();
    private string? lastLabel;
    private double lastPrinted = double.NegativeInfinity;

    public ConsoleProgress() : this(Console.Error, !Console.IsErrorRedirected) { }

    public ConsoleProgress(TextWriter writer, bool interactive) { this.writer = writer; this.interactive = interactive; }

    public void Report(ProgressUpdate u)
    {
        lock (gate)
        {
            if (u.Label != lastLabel) { lastLabel = u.Label; lastPrinted = double.NegativeInfinity; }
            if (!interactive && !u.Final && u.ElapsedSeconds - lastPrinted < RedirectedInterval) return;
            lastPrinted = u.ElapsedSeconds;
            string line = Format(u);
            if (interactive)
            {
                int width = Math.Min(SafeBufferWidth() is > 0 and var w ? w - 1 : 120, 160);
                writer.Write("\r" + line.PadRight(width) + (u.Final ? "\n" : ""));
            }
            else writer.WriteLine(line);
        }
    }

    public static string Format(ProgressUpdate u)
    {
        const int width = 24;
        int filled = u.Fraction is double f ? (int)(width * f) : width;
        string bar = new string('#', filled) + new string('.', width - filled);
        return $"{u.Label} [{bar}] {u.Done}/{u.Total} {u.Unit} {u.Rate:F0} {u.Unit}/s " +
               (u.Final ? $"{u.ElapsedSeconds:F1}s" : $"ETA {FormatSeconds(u.EtaSeconds)}") +
               (string.IsNullOrEmpty(u.Suffix) ? "" : " " + u.Suffix);
    }

    static string FormatSeconds(double? eta) => eta is not double s || double.IsNaN(s) || double.IsInfinity(s) ? "?" :
        s < 60 ? $"{s:F0}s" : s < 3600 ? $"{(int)s / 60}m{(int)s % 60:D2}s" : $"{(int)s / 3600}h{(int)s % 3600 / 60:D2}m";

    static int SafeBufferWidth()
    {
        try { return Console.BufferWidth; }
        catch (IOException) { return 0; }
    }
}
