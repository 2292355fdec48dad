namespace InfluenceSharp.Diagnostics;

/// <summary>
/// One progress report of a long stage (training an epoch, fitting factors, scoring): how much of
/// <see cref="Total"/> is <see cref="Done"/>, in which <see cref="Unit"/>, after how many seconds.
/// The library reports through an <see cref="IProgress{T}"/> that the caller passes in (null =
/// silent) and never writes to the console; a command-line host renders the updates.
/// </summary>
/// <param name="Label">The stage, e.g. "epoch 2/5" or "ekfac self-influence".</param>
/// <param name="Done">Units done so far.</param>
/// <param name="Total">Units in the stage (0 when unknown).</param>
/// <param name="Unit">The unit, e.g. "ex" (examples).</param>
/// <param name="ElapsedSeconds">Seconds since the stage started.</param>
/// <param name="Final">True for the last update of the stage (sent exactly once).</param>
public sealed record ProgressUpdate(string Label, long Done, long Total, string Unit, double ElapsedSeconds, bool Final)
{
    /// <summary>Stage-specific text, e.g. the running loss, or an epoch's metrics on its final update.</summary>
    public string? Suffix { get; init; }

    /// <summary>Units per second so far (0 before any time has passed).</summary>
    public double Rate => ElapsedSeconds > 0 ? Done / ElapsedSeconds : 0;

    /// <summary>Estimated seconds to the end at the current rate; null when unknown (no rate or no total).</summary>
    public double? EtaSeconds => Rate > 0 && Total > 0 ? Math.Max(0, Total - Done) / Rate : null;

    /// <summary>Fraction done in [0, 1]; null when the total is unknown.</summary>
    public double? Fraction => Total > 0 ? Math.Clamp((double)Done / Total, 0, 1) : null;
}
