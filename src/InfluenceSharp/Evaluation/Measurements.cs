using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>Per-example model outputs that the evaluations use as targets, in float64.</summary>
/// <param name="Margin">logit_y − logsumexp of the other logits (TRAK's and Kronfluence's classification
/// measurement); NaN for token sequences, which have no margin.</param>
/// <param name="Loss">cross-entropy loss; for token sequences the SUM over the scored tokens of
/// −log p(token | earlier tokens), the language-model query measurement (−log p(completion | prompt)
/// for a prompt/completion query).</param>
/// <param name="Correct">argmax of the logits equals the label; for token sequences, at every scored token.</param>
public sealed record Measurements(double[] Margin, double[] Loss, bool[] Correct)
{
    public double MeanLoss => Loss.Average();
    public double Accuracy => Correct.Count(c => c) / (double)Correct.Length;

    /// <summary>Evaluates a model (eval mode, no grad) on every example of a dataset; through
    /// <paramref name="prefix"/>'s cached outputs of the model's frozen layers when it covers the data.</summary>
    public static Measurements Of(nn.Module<Tensor, Tensor> model, LabeledDataset data, int batchSize = 1000, Training.FrozenPrefix? prefix = null)
    {
        bool wasTraining = model.training;
        model.eval();
        var device = model.parameters().FirstOrDefault()?.device;
        var margin = new double[data.Count];
        var loss = new double[data.Count];
        var correct = new bool[data.Count];
        var all = Enumerable.Range(0, data.Count).ToArray();
        using (no_grad())
        {
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                int len = Math.Min(batchSize, data.Count - b);
                var idx = all.AsSpan(b, len);
                var logits = Training.FrozenPrefix.Logits(model, prefix, data, idx, device).to_type(ScalarType.Float64);
                var y = data.Targets(idx, device);
                if (logits.dim() == 3) { Sequences(logits, y, b, margin, loss, correct); continue; }
                var own = logits.gather(1, y.unsqueeze(1)).squeeze(1);
                var isOwn = nn.functional.one_hot(y, logits.shape[1]).to_type(ScalarType.Bool);
                var others = logits.masked_fill(isOwn, double.NegativeInfinity).logsumexp(1, false);
                var m = (own - others).cpu().data<double>().ToArray();
                var l = (logits.logsumexp(1, false) - own).cpu().data<double>().ToArray();
                var c = logits.argmax(1).eq(y).cpu().data<bool>().ToArray();
                m.CopyTo(margin, b); l.CopyTo(loss, b); c.CopyTo(correct, b);
            }
        }
        if (wasTraining) model.train();
        return new Measurements(margin, loss, correct);
    }

    /// <summary>Logits [B, T, V], targets [B, T] (ignored where not scored): the summed token losses
    /// of <see cref="LanguageModelTask.TokenLosses"/>, the measurement the methods attribute.</summary>
    static void Sequences(Tensor logits, Tensor y, int offset, double[] margin, double[] loss, bool[] correct)
    {
        var l = LanguageModelTask.TokenLosses(logits, y).sum(1).cpu().data<double>().ToArray();
        using var ignored = LanguageModelTask.Ignored.ToScalar();
        var scored = y.ne(ignored);
        var c = logits.argmax(2).eq(y).logical_or(scored.logical_not()).all(1).cpu().data<bool>().ToArray();
        l.CopyTo(loss, offset); c.CopyTo(correct, offset);
        Array.Fill(margin, double.NaN, offset, l.Length);
    }
}
