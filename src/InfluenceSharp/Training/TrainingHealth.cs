using System.Globalization;

namespace InfluenceSharp.Training;

/// <summary>Whether the training loss was still falling, levelling off or rising at the end of a run.</summary>
public enum LossTrend { Unknown, Falling, Levelling, Rising }

/// <summary>
/// How well a run trained, from its per-epoch metrics: final train and test accuracy and the trend of
/// the training loss over the last epoch. Attribution of an under-trained model is noisy (its
/// gradients still point mostly at what it has not learned yet: on a 600-image folder, detection of
/// flipped labels found 25% of them in the top 10% after 5 epochs and 70% after 10), and a model
/// whose loss rose again trained unstably; <see cref="Advice"/> says what to do.
/// </summary>
public sealed record TrainingHealth(double TrainAccuracy, double TestAccuracy, LossTrend Trend, double LastChange, int Epochs,
    bool UnderTrained, bool Unstable, bool Converged)
{
    /// <summary>A relative drop of the training loss over the last epoch above this is "still falling fast".</summary>
    public const double FallingFast = 0.10;

    /// <summary>Below this relative change (either way) the loss is levelling off.</summary>
    public const double Level = 0.02;

    /// <summary>A final loss this much above the run's lowest is a rise (unstable training).</summary>
    public const double Rise = 0.10;

    /// <summary>The health of a run from its epochs' metrics (oldest first); null without any.
    /// <paramref name="converged"/>: trained to a tolerance (full-batch L-BFGS), which is not under-trained.</summary>
    public static TrainingHealth? Assess(IReadOnlyList<EpochMetrics> history, int numClasses, bool converged = false)
    {
        if (history.Count == 0) return null;
        var last = history[^1];
        double change = double.NaN;
        var trend = LossTrend.Unknown;
        bool unstable = false;
        if (history.Count >= 2 && history[^2].TrainLoss > 0)
        {
            change = (last.TrainLoss - history[^2].TrainLoss) / history[^2].TrainLoss;
            double lowest = history.Min(h => h.TrainLoss);
            unstable = last.TrainLoss > lowest * (1 + Rise);
            trend = unstable || change > Level ? LossTrend.Rising : change < -Level ? LossTrend.Falling : LossTrend.Levelling;
        }
        double chance = numClasses > 1 ? 1.0 / numClasses : 0.5;
        double accuracy = double.IsNaN(last.TestAccuracy) ? last.TrainAccuracy : last.TestAccuracy;
        bool nearChance = accuracy < 1.5 * chance;
        bool fallingFast = trend == LossTrend.Falling && change < -FallingFast;
        bool under = !converged && !unstable && (fallingFast || nearChance);
        return new TrainingHealth(last.TrainAccuracy, last.TestAccuracy, converged ? LossTrend.Levelling : trend, change, history.Count, under, unstable, converged);
    }

    static string Pct(double x) => (100 * x).ToString("F1", CultureInfo.InvariantCulture) + "%";

    /// <summary>"train accuracy 86.1%, test accuracy 72.9%; training loss levelling off (-1.0% in the last epoch)".</summary>
    public string Describe()
    {
        string acc = $"train accuracy {Pct(TrainAccuracy)}" + (double.IsNaN(TestAccuracy) ? "" : $", test accuracy {Pct(TestAccuracy)}");
        string change = double.IsNaN(LastChange) ? "" : $" ({(LastChange >= 0 ? "+" : "")}{Pct(LastChange)} in the last epoch)";
        string trend = Converged ? "trained to convergence"
            : Unstable ? $"training loss rose again{change}"
            : Trend switch
            {
                LossTrend.Falling => $"training loss still falling{change}",
                LossTrend.Levelling => $"training loss levelling off{change}",
                LossTrend.Rising => $"training loss rising{change}",
                _ => "one epoch: the loss trend is unknown",
            };
        return $"{acc}; {trend}";
    }

    /// <summary>What to do about an under-trained or unstable run (null when it looks fine).</summary>
    public string? Advice =>
        Unstable ? "training was unstable: train again with a lower --lr (e.g. half) or --schedule onecycle"
        : UnderTrained ? $"the model looks under-trained, and attributions of an under-trained model are unreliable: train longer (e.g. --epochs {Math.Max(2 * Epochs, Epochs + 5)})"
        : null;
}
