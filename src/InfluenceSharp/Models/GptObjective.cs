using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

/// <summary>
/// The training objective of a model's outputs: classification (logits [B, K], labels [B]) or
/// next-token prediction (logits [B, T, V], targets [B, T] with −100 where a token is not scored).
/// For sequences the batch loss is the mean over its scored tokens, and "correct" counts examples'
/// worth of correctly predicted tokens (B × the batch's token accuracy, rounded), so that accuracy
/// stays a fraction.
/// </summary>
public static class GptObjective
{
    /// <summary>The target value that is not scored.</summary>
    public const long Ignored = -100;

    /// <summary>Whether the outputs are per-token logits [B, T, V].</summary>
    public static bool IsSequence(Tensor logits) => logits.dim() == 3;

    /// <summary>The mean loss of the batch (per example, or per scored token for sequences).</summary>
    public static Tensor MeanLoss(Tensor logits, Tensor targets) => IsSequence(logits)
        ? nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Ignored)
        : nn.functional.cross_entropy(logits, targets);

    /// <summary>Σ_b w_b L_b / B for classification; Σ_b w_b Σ_t ℓ_bt / (scored tokens) for sequences
    /// (both the mean loss when every w_b = 1).</summary>
    public static Tensor WeightedLoss(Tensor logits, Tensor targets, Tensor weights)
    {
        if (!IsSequence(logits))
        {
            using var inv = (1.0 / targets.shape[0]).ToScalar();
            return nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.None).mul(weights).sum().mul(inv);
        }
        var tokens = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Ignored, reduction: nn.Reduction.None)
            .reshape(targets.shape);
        using var inv2 = (1.0 / Math.Max(1, Scored(targets))).ToScalar();
        return tokens.sum(1).mul(weights).sum().mul(inv2);
    }

    /// <summary>Scored tokens of sequence targets.</summary>
    public static long Scored(Tensor targets)
    {
        using var ignored = Ignored.ToScalar();
        return targets.ne(ignored).sum().item<long>();
    }

    /// <summary>Correct predictions: examples (classification) or B × token accuracy, rounded (sequences).</summary>
    public static long Correct(Tensor logits, Tensor targets)
    {
        if (!IsSequence(logits)) return logits.argmax(1).eq(targets).sum().item<long>();
        long scored = Scored(targets);
        if (scored == 0) return 0;
        long right = logits.argmax(-1).eq(targets).sum().item<long>();
        return (long)Math.Round((double)targets.shape[0] * right / scored);
    }
}
