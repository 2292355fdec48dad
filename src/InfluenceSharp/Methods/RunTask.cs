using InfluenceSharp.Data;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods;

/// <summary>The task every method built for a run attributes with, chosen from the run's data in
/// this one place: next-token prediction (<see cref="LanguageModelTask"/>) for text data,
/// classification with the chosen query measurement otherwise.</summary>
public static class RunTask
{
    /// <summary>True when the run was trained on token sequences.</summary>
    public static bool IsText(Run run) => run.Data.Train is TextDataset;

    /// <summary>The run's task: <see cref="LanguageModelTask"/> for a text run (its query measure is
    /// the summed −log p of the scored tokens, whatever --measure says), else classification.</summary>
    public static IAttributionTask For(Run run, MethodSettings s)
    {
        if (IsText(run) && s.MeasureGiven) throw new InfluenceSharpException(MeasureRefusal(s));
        return IsText(run) ? new LanguageModelTask() : new ClassificationTask(s.Measure);
    }

    /// <summary>Why a language-model run refuses an explicit measurement.</summary>
    public static string MeasureRefusal(MethodSettings s) =>
        $"--measure {(s.Measure == QueryMeasurement.Margin ? "margin" : "loss")}: does not apply to a run trained on text with a language model (its queries are measured by the summed -log p of their scored tokens, e.g. a completion given its prompt); leave --measure out";

    /// <summary>The classification task, for a method that only has a classifier form; a text run is
    /// refused with a message naming <paramref name="method"/>.</summary>
    public static ClassificationTask Classification(Run run, MethodSettings s, string method) =>
        IsText(run) ? throw new InfluenceSharpException($"--methods {method}: has no language-model form; for a run trained on text use ekfac, kfac, diagonal, identity, ekfac-last, relatif, datainf, the if-* solvers, trak, tracin, tracin-last, tracin-proj, graddot or gradcos")
            : new ClassificationTask(s.Measure);
}
