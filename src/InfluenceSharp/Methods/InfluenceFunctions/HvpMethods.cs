using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>Influence functions by Hessian-vector products (<see cref="HvpInfluence"/>) with one solver.</summary>
public abstract class HvpMethodDescriptor : MethodDescriptor
{
    public abstract HvpSolver Solver { get; }

    /// <summary>The solver's own settings.</summary>
    protected abstract MethodOption SolverOptions { get; }

    public override string Name => "if-" + Solver.ToString().ToLowerInvariant();

    public override MethodOption Uses =>
        MethodOption.Measure | MethodOption.Damping | MethodOption.Layers | MethodOption.TrainBatchSize | MethodOption.Seed
        | MethodOption.Hessian | MethodOption.L2 | SolverOptions;

    public override string? DampingHeuristic => DampingDefaults.HvpHeuristic;

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context)
    {
        var h = s.Hvp ?? HvpSettings.Default;
        var (damping, l2) = DampingDefaults.Hvp(s.Damping, h, run.Last);
        var o = new HvpSolverOptions
        {
            Damping = damping, L2 = l2, Hessian = h.Hessian, Layers = s.Layers,
            TrainBatchSize = s.TrainBatchSize, Seed = s.Seed, Progress = context.Progress,
            CgTolerance = h.CgTolerance, CgMaxIterations = h.CgIterations,
            LissaDepth = h.LissaDepth, LissaScale = h.LissaScale, LissaRepetitions = h.LissaRepetitions, LissaBatchSize = h.LissaBatchSize,
            ArnoldiIterations = h.ArnoldiIterations, ArnoldiTopK = h.ArnoldiTopK,
        };
        return new HvpInfluence(run.Last.LoadModel(), RunTask.For(run, s), run.Data.Train, Solver, o, context.Profiler);
    }
}

/// <summary>The explicit (inverted) Hessian: exact, for small layer sets.</summary>
public sealed class IfExplicitMethod : HvpMethodDescriptor
{
    public override int Order => 60;
    public override HvpSolver Solver => HvpSolver.Explicit;
    protected override MethodOption SolverOptions => MethodOption.None;
}

/// <summary>Conjugate gradients per query.</summary>
public sealed class IfCgMethod : HvpMethodDescriptor
{
    public override int Order => 70;
    public override HvpSolver Solver => HvpSolver.Cg;
    protected override MethodOption SolverOptions => MethodOption.CgTolerance | MethodOption.CgIterations;

    public override string? Check(MethodSettings s) =>
        s.Damping == 0 && (s.Hvp ?? HvpSettings.Default).Hessian != HessianKind.GaussNewton
            ? "--damping 0: if-cg with the true Hessian needs damping > 0 (the Hessian may be indefinite); give --damping X > 0 or --hessian gauss-newton" : null;
}

/// <summary>LiSSA's stochastic Neumann series.</summary>
public sealed class IfLissaMethod : HvpMethodDescriptor
{
    public override int Order => 80;
    public override HvpSolver Solver => HvpSolver.Lissa;
    protected override MethodOption SolverOptions =>
        MethodOption.LissaDepth | MethodOption.LissaScale | MethodOption.LissaRepetitions | MethodOption.LissaBatchSize;
}

/// <summary>Arnoldi's top eigenpairs of the curvature.</summary>
public sealed class IfArnoldiMethod : HvpMethodDescriptor
{
    public override int Order => 90;
    public override HvpSolver Solver => HvpSolver.Arnoldi;
    protected override MethodOption SolverOptions => MethodOption.ArnoldiIterations | MethodOption.ArnoldiTopK;
}
