using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Training;

namespace InfluenceSharp.Methods;

/// <summary>The damping every method family uses when none is given, decided here once so that every
/// path to a method (by name, from fitted factors, from the command line) damps the same way.</summary>
/// <remarks>A run trained to convergence by full-batch L-BFGS minimises mean CE + (L2/2)‖θ‖²: its
/// weight decay L2 is part of the objective's curvature. Influence functions of such a run tie their
/// regularisation to it: the factored ones use λ = L2, the Hessian-vector-product ones add L2·I to the
/// curvature with a tiny extra damping 1e-6.</remarks>
public static class DampingDefaults
{
    /// <summary>The L2 coefficient of a checkpoint trained to convergence by full-batch L-BFGS (its
    /// weight decay); null for SGD runs.</summary>
    public static double? ConvergedL2(Checkpoint checkpoint) =>
        checkpoint.Info.Training is { LbfgsTolerance: not null } t ? t.WeightDecay : null;

    /// <summary>Factored influence functions (ekfac, kfac, diagonal, identity): the given damping,
    /// else a converged run's L2, else null = the per-layer heuristic (0.1 × mean eigenvalue).</summary>
    public static double? Factored(double? given, Checkpoint checkpoint) => given ?? ConvergedL2(checkpoint);

    /// <summary>What 'heuristic' means for the factored influence functions (help text).</summary>
    public const string FactoredHeuristic = "0.1 x mean eigenvalue per layer (a run trained to convergence by L-BFGS: its weight decay)";

    /// <summary>Hessian-vector-product influence functions: (damping λ, L2 added to the curvature).
    /// Not given: the solver options' default λ, or 1e-6 with a converged run's L2 (unless L2 was given).</summary>
    public static (double Damping, double L2) Hvp(double? given, HvpSettings h, Checkpoint checkpoint)
    {
        double? converged = ConvergedL2(checkpoint);
        double damping = given ?? (converged is null ? new HvpSolverOptions().Damping : 1e-6);
        double l2 = h.L2Given || converged is null ? h.L2 : converged.Value;
        return (damping, l2);
    }

    /// <summary>What 'heuristic' means for the Hessian-vector-product influence functions (help text).</summary>
    public static string HvpHeuristic => FormattableString.Invariant($"{new HvpSolverOptions().Damping:G} (a run trained to convergence by L-BFGS: 1e-6 plus its weight decay as --l2)");

    /// <summary>TRAK: λ in (ΦᵀΦ + λI)⁻¹; not given: TRAK's reference λ = 0.</summary>
    public static double Trak(double? given) => given ?? 0;
}
