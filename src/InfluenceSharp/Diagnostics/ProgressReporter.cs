using System.Diagnostics;

namespace InfluenceSharp.Diagnostics;

/// <summary>
/// Reports one stage to an <see cref="IProgress{T}"/> of <see cref="ProgressUpdate"/>: at most one
/// update every <see cref="MinInterval"/> from <see cref="Update"/>, and one final update from
/// <see cref="Complete"/> (or <see cref="Dispose"/>, when anything was done). Use
/// <see cref="Start"/>, which returns null for a null sink, so that a call site stays one line:
/// <code>using var bar = ProgressReporter.Start(options.Progress, "scores", n); ... bar?.Update(done);</code>
/// </summary>
public sealed class ProgressReporter : IDisposable
{
    /// <summary>The shortest time between two non-final updates.</summary>
    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(0.2);

    private readonly IProgress<ProgressUpdate> sink;
    private readonly Stopwatch sw = Stopwatch.StartNew();
    private double lastReport = double.NegativeInfinity;
    private long done;
    private string? suffix;

    /// <summary>Starts timing a stage of <paramref name="total"/> units reported to <paramref name="sink"/>.</summary>
    public ProgressReporter(IProgress<ProgressUpdate> sink, string label, long total, string unit = "ex")
    {
        ArgumentNullException.ThrowIfNull(sink);
        this.sink = sink; Label = label; Total = total; Unit = unit;
    }

    /// <summary>A reporter for <paramref name="sink"/>, or null when <paramref name="sink"/> is null (silent).</summary>
    public static ProgressReporter? Start(IProgress<ProgressUpdate>? sink, string label, long total, string unit = "ex") =>
        sink is null ? null : new ProgressReporter(sink, label, total, unit);

    /// <summary>The stage's label.</summary>
    public string Label { get; }
    /// <summary>Units in the stage.</summary>
    public long Total { get; }
    /// <summary>The unit of <see cref="Total"/>.</summary>
    public string Unit { get; }
    /// <summary>Seconds since the reporter was created.</summary>
    public double Elapsed => sw.Elapsed.TotalSeconds;
    /// <summary>True once the final update has been sent.</summary>
    public bool Completed { get; private set; }

    /// <summary>Records progress; reports it unless the last report was under <see cref="MinInterval"/> ago.</summary>
    /// <param name="done">Units done so far.</param>
    /// <param name="suffix">Replaces the stage's suffix text when not null.</param>
    public void Update(long done, string? suffix = null)
    {
        if (Completed) return;
        this.done = done;
        if (suffix is not null) this.suffix = suffix;
        double t = Elapsed;
        if (t - lastReport < MinInterval.TotalSeconds) return;
        lastReport = t;
        Send(false);
    }

    /// <summary>Sends the final update (once); <paramref name="suffix"/> replaces the suffix when not null.</summary>
    public void Complete(string? suffix = null)
    {
        if (Completed) return;
        if (suffix is not null) this.suffix = suffix;
        Completed = true;
        Send(true);
    }

    /// <summary>Completes the stage if anything was done and it was not completed yet.</summary>
    public void Dispose()
    {
        if (!Completed && done > 0) Complete();
        Completed = true;
    }

    private void Send(bool final) =>
        sink.Report(new ProgressUpdate(Label, done, Total, Unit, Elapsed, final) { Suffix = suffix });
}
