namespace InfluenceSharp.Training;

/// <summary>How long a model retrained on a changed training set (examples removed or duplicated) trains.</summary>
public enum RetrainBudget
{
    /// <summary>The same number of optimiser steps, with the same learning-rate schedule over them, as
    /// training on the full set: removing k examples changes which examples the steps see, not how many
    /// steps there are.</summary>
    Steps,
    /// <summary>The run's number of epochs over the changed set: removing examples also removes steps.</summary>
    Epochs,
}

/// <summary>The training options of a retraining under a <see cref="RetrainBudget"/>; shared by
/// `curate` and `evaluate remove`.</summary>
public static class RetrainBudgets
{
    public static RetrainBudget Parse(string s) => s.Trim().ToLowerInvariant() switch
    {
        "steps" => RetrainBudget.Steps,
        "epochs" => RetrainBudget.Epochs,
        _ => throw new InfluenceSharpException($"retrain budget '{s}': expected steps or epochs"),
    };

    public static string Name(RetrainBudget b) => b == RetrainBudget.Steps ? "steps" : "epochs";

    /// <summary>The options to retrain with: for <see cref="RetrainBudget.Steps"/>, <paramref name="training"/>
    /// with <see cref="TrainOptions.TotalSteps"/> = Epochs × the full set's steps per epoch (the full run's
    /// step count); unchanged for <see cref="RetrainBudget.Epochs"/> and for full-batch L-BFGS runs
    /// (which train to convergence, not for a number of steps).</summary>
    public static TrainOptions For(TrainOptions training, int fullCount, RetrainBudget budget)
    {
        if (fullCount < 1) throw new InfluenceSharpException($"retrain budget: the full training set has {fullCount} examples");
        if (budget == RetrainBudget.Epochs || training.LbfgsTolerance is not null) return training with { TotalSteps = null };
        return training with { TotalSteps = training.Epochs * training.StepsPerEpoch(fullCount) };
    }
}
