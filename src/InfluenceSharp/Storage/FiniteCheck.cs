using static TorchSharp.torch;

namespace InfluenceSharp.Storage;

/// <summary>Refuses NaN and infinity in what a merge reads (partial sums, partial scores).</summary>
public static class FiniteCheck
{
    /// <summary>Throws, naming the file and the first bad position, when a tensor read from it holds
    /// NaN or infinity.</summary>
    public static void Require(Tensor t, string path, string advice)
    {
        using var scope = NewDisposeScope();
        var bad = t.isfinite().logical_not().flatten();
        if (!bad.any().item<bool>()) return;
        long first = bad.nonzero()[0, 0].item<long>();
        var flat = t.flatten();
        throw new InfluenceSharpException($"{path}: holds {bad.sum().item<long>()} non-finite values (first {flat[first].to(ScalarType.Float64).item<double>()} at flat index {first}): damaged, or written from a diverged model; {advice}");
    }
}
