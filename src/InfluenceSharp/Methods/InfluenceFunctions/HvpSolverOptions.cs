using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>Which curvature the Hessian-vector-product methods invert.</summary>
public enum HessianKind
{
    /// <summary>The true Hessian of the training loss (double backward); may be indefinite away from a minimum.</summary>
    True,
    /// <summary>The Gauss-Newton matrix Jᵀ H_out J (H_out = the Hessian of the loss w.r.t. the model
    /// outputs; for softmax cross-entropy diag(p) − ppᵀ): positive semi-definite everywhere.</summary>
    GaussNewton,
}

/// <summary>How (H + λI)⁻¹ is applied.</summary>
public enum HvpSolver
{
    /// <summary>Form H explicitly (one HVP per parameter) and eigendecompose it in float64.</summary>
    Explicit,
    /// <summary>Batched conjugate gradient over all right-hand sides at once.</summary>
    Cg,
    /// <summary>LiSSA (Agarwal et al. 2017; Koh and Liang 2017): a stochastic Neumann series.</summary>
    Lissa,
    /// <summary>Arnoldi (Schioppa et al. 2022): the top-k eigenpairs of H from a Krylov subspace.</summary>
    Arnoldi,
}

/// <summary>
/// Settings of the influence functions that work through Hessian-vector products
/// (<see cref="HvpInfluence"/>: if-explicit, if-cg, if-lissa, if-arnoldi; dattri's and Captum's IF family).
/// The curvature is H = (1/n) Σ_i ∇²_θ L(z_i, θ) + L2·I over the n training examples given to the
/// method — the MEAN over training examples, the same convention as the fitted factors (K-FAC and
/// EK-FAC normalise their covariances per example), so scores of every IF method are on one scale —
/// and θ is the tracked layers' parameters (every Linear/Conv2d weight and bias, or those <see cref="Layers"/>
/// selects); other parameters (normalisation layers, embeddings) are held fixed. Scores are
/// ∇f(q)ᵀ (H + λI)⁻¹ ∇L(z), positive = helpful.
/// </summary>
public sealed record HvpSolverOptions
{
    /// <summary>λ in (H + λI)⁻¹ (absolute). Must be positive for if-cg with the true Hessian (it may be indefinite).</summary>
    public double Damping { get; init; } = 1e-3;
    /// <summary>The coefficient of an L2 term (L2/2)‖θ‖² in the training objective: adds L2·I to H
    /// (use the weight decay the model was trained with). 0 = none.</summary>
    public double L2 { get; init; }
    /// <summary>The true Hessian (default) or the positive semi-definite Gauss-Newton matrix.</summary>
    public HessianKind Hessian { get; init; } = HessianKind.True;
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }

    /// <summary>if-explicit refuses more tracked parameters than this (H is P × P in float64).</summary>
    public int MaxExplicitParameters { get; init; } = 20_000;

    /// <summary>if-cg: stop when every right-hand side's residual ‖b − (H+λI)x‖ ≤ tol · ‖b‖.</summary>
    public double CgTolerance { get; init; } = 1e-5;
    /// <summary>if-cg: iteration cap (the solve stops there; the residuals reached are reported).</summary>
    public int CgMaxIterations { get; init; } = 100;

    /// <summary>if-lissa: recursion depth J; null = tuned (see <see cref="HvpInfluence.TuneLissa"/>).</summary>
    public int? LissaDepth { get; init; }
    /// <summary>if-lissa: the scale s (must exceed the largest eigenvalue of H + λI for convergence);
    /// null = tuned from an estimate of the largest eigenvalue.</summary>
    public double? LissaScale { get; init; }
    /// <summary>if-lissa: independent repetitions averaged.</summary>
    public int LissaRepetitions { get; init; } = 1;
    /// <summary>if-lissa: training examples per stochastic HVP (sampled without replacement per step);
    /// ≥ n (e.g. <see cref="FullBatch"/>) = the full training set every step (deterministic); null =
    /// tuned from the curvature's trace and largest eigenvalue.</summary>
    public int? LissaBatchSize { get; init; }
    /// <summary>A <see cref="LissaBatchSize"/> that means the full training set every step.</summary>
    public const int FullBatch = int.MaxValue;
    /// <summary>if-lissa: the largest depth the tuning picks (it reports the depth 1% accuracy would need).</summary>
    public int LissaMaxAutoDepth { get; init; } = 5000;

    /// <summary>if-arnoldi: Krylov iterations (HVPs).</summary>
    public int ArnoldiIterations { get; init; } = 200;
    /// <summary>if-arnoldi: eigenpairs kept (the largest eigenvalues).</summary>
    public int ArnoldiTopK { get; init; } = 100;

    /// <summary>Training examples per batch: per-example gradients streamed for scoring, and the
    /// batches each HVP over the training set is accumulated in.</summary>
    public int TrainBatchSize { get; init; } = 256;
    /// <summary>Queries per batch when computing query gradients.</summary>
    public int QueryBatchSize { get; init; } = 128;
    /// <summary>Queries solved together by if-cg and if-lissa. Each query's iterates are independent
    /// of the others' (LiSSA draws the same minibatches for every solve), so solving the query set in
    /// blocks gives the same result and bounds the solver's working set whatever the number of queries.</summary>
    public int QueryBlockSize { get; init; } = 128;
    /// <summary>Seeds LiSSA's minibatches and Arnoldi's start vector.</summary>
    public int Seed { get; init; }
    /// <summary>Receives progress (and CG residuals, LiSSA norms in the suffix); null = silent.</summary>
    public IProgress<ProgressUpdate>? Progress { get; init; }

    /// <summary>Checks the settings for <paramref name="solver"/>; throws <see cref="InfluenceSharpException"/>
    /// naming the first bad one.</summary>
    public void Validate(HvpSolver solver)
    {
        void Check(bool ok, string message) { if (!ok) throw new InfluenceSharpException(message); }
        Check(double.IsFinite(Damping) && Damping >= 0, $"damping {Damping}: must be a non-negative finite number");
        Check(double.IsFinite(L2) && L2 >= 0, $"L2 {L2}: must be a non-negative finite number");
        Check(TrainBatchSize >= 1 && QueryBatchSize >= 1, "batch sizes must be at least 1");
        Check(QueryBlockSize >= 1, $"query block size {QueryBlockSize}: must be at least 1");
        switch (solver)
        {
            case HvpSolver.Cg:
                Check(Hessian == HessianKind.GaussNewton || Damping > 0,
                    "if-cg with the true Hessian needs damping > 0 (the Hessian may be indefinite and CG needs a positive definite matrix); give --damping X > 0 or use --hessian gauss-newton");
                Check(double.IsFinite(CgTolerance) && CgTolerance > 0, $"CG tolerance {CgTolerance}: must be positive");
                Check(CgMaxIterations >= 1, $"CG iterations {CgMaxIterations}: must be at least 1");
                break;
            case HvpSolver.Lissa:
                Check(LissaScale is null || (double.IsFinite(LissaScale.Value) && LissaScale > 0), $"LiSSA scale {LissaScale}: must be positive");
                Check(LissaDepth is null or >= 1, $"LiSSA depth {LissaDepth}: must be at least 1");
                Check(LissaMaxAutoDepth >= 1, $"LiSSA largest tuned depth {LissaMaxAutoDepth}: must be at least 1");
                Check(LissaRepetitions >= 1, $"LiSSA repetitions {LissaRepetitions}: must be at least 1");
                Check(LissaBatchSize is null or >= 1, $"LiSSA batch size {LissaBatchSize}: must be at least 1");
                break;
            case HvpSolver.Arnoldi:
                Check(ArnoldiIterations >= 1, $"Arnoldi iterations {ArnoldiIterations}: must be at least 1");
                Check(ArnoldiTopK >= 1 && ArnoldiTopK <= ArnoldiIterations, $"Arnoldi top-k {ArnoldiTopK}: must be between 1 and the iterations ({ArnoldiIterations})");
                break;
        }
    }
}
