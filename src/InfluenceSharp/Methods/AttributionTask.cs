using static TorchSharp.torch;

namespace InfluenceSharp.Methods;

/// <summary>What the query side measures. Both are "loss-like" (lower = better for the query), so a
/// positive score always means the training example helps.</summary>
public enum QueryMeasurement { Loss, Margin }

/// <summary>How a model's outputs turn into the losses attribution needs: the one task type of the
/// library (Kronfluence's Task; TRAK's model output is part of it). Every method returns SUMS over the
/// batch so that per-layer output gradients are per-example gradients. <see cref="ModelOutput"/> and
/// <see cref="OutToLoss"/> have defaults (the classification margin and 1 − p_y), so a task that
/// only defines its losses still runs TRAK the way a classifier does.</summary>
public interface IAttributionTask
{
    /// <summary>Σ_b L(z_b): the training loss whose gradients are attributed.</summary>
    Tensor TrainLoss(Tensor logits, Tensor targets);

    /// <summary>Σ_b f(q_b): the query measurement (loss-like).</summary>
    Tensor QueryMeasure(Tensor logits, Tensor targets);

    /// <summary>Σ_b L(z_b, ŷ_b) with ŷ sampled from the model's predictive distribution (true Fisher).</summary>
    Tensor SampledLoss(Tensor logits, Generator generator);

    /// <summary>Σ_b f(z_b): the model output whose parameter gradients TRAK projects, for training
    /// examples and queries alike. Default: the margin (<see cref="ClassificationTask.Margins"/>).</summary>
    Tensor ModelOutput(Tensor logits, Tensor targets) => ClassificationTask.Margins(logits, targets).sum();

    /// <summary>Q(z_b) per example [B]: ∂L/∂f, TRAK's reweighting of training examples. Default: 1 − p_y,
    /// which goes with the margin under softmax cross-entropy.</summary>
    Tensor OutToLoss(Tensor logits, Tensor targets) =>
        1 - nn.functional.softmax(logits, 1).gather(1, targets.unsqueeze(1)).squeeze(1);
}

/// <summary>Classification with softmax cross-entropy (the default task).</summary>
public sealed record ClassificationTask(QueryMeasurement Query = QueryMeasurement.Loss) : IAttributionTask
{
    public Tensor TrainLoss(Tensor logits, Tensor targets) =>
        nn.functional.cross_entropy(logits, targets, reduction: nn.Reduction.Sum);

    public Tensor QueryMeasure(Tensor logits, Tensor targets) =>
        Query == QueryMeasurement.Loss ? TrainLoss(logits, targets) : Margins(logits, targets).neg().sum();

    public Tensor SampledLoss(Tensor logits, Generator generator)
    {
        Tensor sampled;
        using (no_grad())
            sampled = torch.multinomial(nn.functional.softmax(logits.detach().to(ScalarType.Float64), 1), 1, true, generator).squeeze(1);
        return nn.functional.cross_entropy(logits, sampled, reduction: nn.Reduction.Sum);
    }

    /// <summary>margin = logit_y − logsumexp of the other logits (TRAK's and Kronfluence's classification output).</summary>
    public static Tensor Margins(Tensor logits, Tensor targets)
    {
        var correct = logits.gather(1, targets.unsqueeze(1)).squeeze(1);
        var mask = nn.functional.one_hot(targets, logits.shape[1]).to(ScalarType.Bool);
        var others = logits.masked_fill(mask, double.NegativeInfinity).logsumexp(1);
        return correct - others;
    }
}
