using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>
/// Next-token prediction: logits [B, T, V], targets [B, T] (−100 where not scored). A sequence's
/// training loss is the SUM over its scored tokens of −log p(token | earlier tokens) (not the mean, so
/// that a sequence's gradient is the sum of its tokens' and per-token scores add up to it). The query
/// measurement is the same sum over the query's scored tokens: for a prompt/completion sequence,
/// −log p(completion | prompt), loss-like (lower = the model is surer of the completion).
/// </summary>
public sealed record LanguageModelTask : IAttributionTask
{
    /// <summary>The target value that is not scored.</summary>
    public const long Ignored = -100;

    public Tensor TrainLoss(Tensor logits, Tensor targets) =>
        nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Ignored, reduction: nn.Reduction.Sum);

    public Tensor QueryMeasure(Tensor logits, Tensor targets) => TrainLoss(logits, targets);

    /// <summary>TRAK's model output: a sequence's summed log-probability of its scored tokens,
    /// Σ_t log p(y_t | y_&lt;t) (the negated training loss). With it the training loss is exactly −f,
    /// so the out-to-loss weight is 1 for every sequence (<see cref="OutToLoss"/>); a per-token margin
    /// would need a weight per token, which TRAK's one weight per example cannot carry.</summary>
    public Tensor ModelOutput(Tensor logits, Tensor targets) => TrainLoss(logits, targets).neg();

    /// <summary>1 per sequence [B]: −∂L/∂f for f = <see cref="ModelOutput"/>.</summary>
    public Tensor OutToLoss(Tensor logits, Tensor targets) =>
        torch.ones(logits.shape[0], dtype: logits.dtype, device: logits.device);

    /// <summary>−log p of every target [B, T] (0 where not scored): the per-token terms of
    /// <see cref="TrainLoss"/>.</summary>
    public static Tensor TokenLosses(Tensor logits, Tensor targets)
    {
        var flat = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[^1]), targets.reshape(-1), ignore_index: Ignored, reduction: nn.Reduction.None);
        return flat.reshape(targets.shape);
    }

    /// <summary>The next-token loss with every position's target sampled from the model (true Fisher);
    /// every position counts, as the sampled targets carry no padding.</summary>
    public Tensor SampledLoss(Tensor logits, Generator generator)
    {
        var flat = logits.reshape(-1, logits.shape[^1]);
        Tensor sampled;
        using (no_grad())
            sampled = torch.multinomial(nn.functional.softmax(flat.detach().to(ScalarType.Float64), 1), 1, true, generator).squeeze(1);
        return nn.functional.cross_entropy(flat, sampled, reduction: nn.Reduction.Sum);
    }
}
