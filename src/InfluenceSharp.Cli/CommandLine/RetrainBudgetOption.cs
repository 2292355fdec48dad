using System.CommandLine;

namespace InfluenceSharp.Cli.CommandLine;

/// <summary>`--retrain-budget steps|epochs`, shared by `curate` and `evaluate remove` (see <see cref="Training.RetrainBudgets"/>).</summary>
internal static class RetrainBudgetOption
{
    public static Option<string> Create(string fallback) =>
        Opt.Choice("--retrain-budget", "how long each retraining on a changed training set trains: steps (the full run's number of optimiser steps and " +
            "its learning-rate schedule over them) or epochs (the run's epochs over the changed set, so removing examples removes steps)",
            fallback, "steps", "epochs");
}
