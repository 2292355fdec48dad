using InfluenceSharp.Features;

namespace InfluenceSharp.Methods.Trak;

/// <summary>How (Φᵀ Φ + λI)⁻¹ is computed (float64, once per model).</summary>
public enum KernelSolver
{
    /// <summary>λ &gt; 0: Cholesky (falling back to Eigh if it fails); λ = 0: Cholesky when the kernel
    /// is comfortably full rank (its pseudo-inverse is then its inverse), otherwise Eigh.</summary>
    Auto,
    /// <summary>Cholesky factorisation; refuses a kernel that is not positive definite.</summary>
    Cholesky,
    /// <summary>Symmetric eigendecomposition; eigenvalues below RankTolerance·λ_max are treated as
    /// zero (a pseudo-inverse), so rank-deficient kernels (k ≥ n, or a null space such as the
    /// softmax's sum-to-zero direction) are handled.</summary>
    Eigh,
}

public sealed record TrakOptions : FeatureRunOptions
{
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }
    /// <summary>The seeded projection P (per model m, stream m). Default: dense Rademacher, k = 2048,
    /// like the reference TRAK library. Entries are ±1 / N(0,1) (the reference's scale).</summary>
    public ProjectionOptions Projection { get; init; } = new() { Layout = ProjectionLayout.Dense, Dim = 2048 };
    /// <summary>λ in (ΦᵀΦ + λI)⁻¹. Default 0 (as the reference); then the pseudo-inverse is used (by
    /// Cholesky when the kernel is comfortably full rank, otherwise by Eigh).</summary>
    public double Damping { get; init; }
    public KernelSolver Solver { get; init; } = KernelSolver.Auto;
    /// <summary>Relative eigenvalue cutoff of the Eigh solver; null = max(n, k)·(ε_f² + ε₆₄) with
    /// ε_f the feature dtype's machine epsilon (the noise level of a Gram matrix of such features).</summary>
    public double? RankTolerance { get; init; }
    /// <summary>φ = Pᵀ∇f / √p: p is the number of projected (tracked) parameters unless set here. The
    /// reference library divides by √(all model parameters); set this to that count for parity.</summary>
    public long? NormalizationCount { get; init; }
    /// <summary>Reproduce the reference library's per-model rescaling (off by default): trak's
    /// BasicScoreComputer divides each model's (ΦᵀΦ + λI)⁻¹ by the mean absolute value of its entries
    /// before multiplying ("to avoid numerical issues when going to float16"). That weights model m by
    /// 1/mean|(Φ_mᵀΦ_m + λI)⁻¹| in the ensemble average and makes the scores' scale depend on the
    /// features' scale; with it on and NormalizationCount = all parameters, scores follow the reference.</summary>
    public bool ReferenceRescaling { get; init; }
}
