using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>How the Hessian of each tracked layer is approximated.</summary>
public enum FactorStrategy { Identity, Diagonal, Kfac, Ekfac }

/// <summary>True Fisher: output gradients with labels sampled from the model (default).
/// Empirical Fisher: output gradients with the true labels.</summary>
public enum FisherType { True, Empirical }

public sealed record FactorOptions
{
    public FactorStrategy Strategy { get; init; } = FactorStrategy.Ekfac;
    public FisherType Fisher { get; init; } = FisherType.True;
    /// <summary>Training examples per attribution batch (the command line's --batch-size).</summary>
    public int TrainBatchSize { get; init; } = 256;
    /// <summary>Examples per partition: each finished partition's partial sums are saved, so an
    /// interrupted fit resumes, and `--shard i/n` splits the partitions among processes.</summary>
    public int PartitionSize { get; init; } = 10_000;
    /// <summary>Seeds the labels sampled for the true Fisher (per partition, so resume is exact).</summary>
    public int Seed { get; init; }
    /// <summary>Tracked-layer name filter (substrings, comma separated); null = every Linear/Conv2d.</summary>
    public string? Layers { get; init; }
    /// <summary>Bound on the bytes of per-example conv gradients [b, Out, In] one layer forms at once
    /// (EK-FAC's eigenvalue pass splits a batch into slices to respect it). Default 1 GiB; it
    /// changes no result.</summary>
    public long MemoryBytes { get; init; } = Gradients.LayerBatch.DefaultMemoryBytes;
    /// <summary>EK-FAC: bytes of the covariance pass's layer inputs and output gradients kept for the
    /// eigenvalue pass, which then skips the forward and backward passes for those batches (as many
    /// batches as fit; 0 = recompute all). They are kept in a temporary file (unlinked at once) in the
    /// factors directory, or in the temp folder when the fit has none, not in memory. Default 1 GiB;
    /// it changes no result.</summary>
    public long CaptureCacheBytes { get; init; } = 1L << 30;
    /// <summary>Receives progress (examples done, rate); null = silent (the default). Not part of any manifest.</summary>
    public IProgress<ProgressUpdate>? Progress { get; init; }
}

/// <summary>Settings for scoring with fitted factors (Kronfluence's score arguments).</summary>
public sealed record ScoreOptions
{
    /// <summary>Absolute damping λ; null = the heuristic 0.1 × mean eigenvalue, per layer.</summary>
    public double? Damping { get; init; }
    public int TrainBatchSize { get; init; } = 256;
    public int QueryBatchSize { get; init; } = 128;
    /// <summary>Rank of the per-layer approximation of preconditioned query gradients; 0 = exact.</summary>
    public int QueryRank { get; init; }
    /// <summary>Compute score products in bfloat16 instead of float32.</summary>
    public bool BFloat16 { get; init; }
    /// <summary>Bound on the bytes of per-example conv gradients [b, Out, In] one layer forms at once
    /// (self-influence and pairwise scoring split batches into slices to respect it). Default 1 GiB.</summary>
    public long MemoryBytes { get; init; } = Gradients.LayerBatch.DefaultMemoryBytes;
    /// <summary>Receives progress (examples done, rate); null = silent (the default). Not part of any manifest.</summary>
    public IProgress<ProgressUpdate>? Progress { get; init; }
}
