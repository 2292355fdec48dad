namespace InfluenceSharp.Methods;

/// <summary>Why a method is flagged for curation's group objectives (see
/// <see cref="MethodDescriptor.GroupObjectiveWarning"/>).</summary>
public static class GroupObjectiveWarnings
{
    /// <summary>Second-order influence (EK-FAC, K-FAC): measured on the tinted benchmark and on
    /// an exact logistic-regression version of it (bench/README.md, "D3M with EK-FAC").</summary>
    public const string Accurate =
        "on the tinted benchmark removing 15% of the training set by its d3m ranking lowered worst-group accuracy below random removal: " +
        "the ranking lowers the validation objective as predicted, at the cost of a group the objective weighs little, and exact influence does the same; " +
        "compare several --remove counts, and trak";

    /// <summary>KNN-Shapley values an example by its neighbours' labels, not by the validation losses.</summary>
    public const string KnnShapley =
        "on the tinted benchmark removing 15% of the training set by its d3m ranking collapsed a group (worst-group accuracy 0.3%): " +
        "its values follow the neighbours' labels, not the validation losses; use trak";
}
