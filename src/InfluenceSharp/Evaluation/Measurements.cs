using InfluenceSharp.Data;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>Per-example model outputs that the evaluations use as targets, in float64.</summary>
/// <param name="Margin">logit_y − logsumexp of the other logits (TRAK's and Kronfluence's classification measurement).</param>
/// <param name="Loss">cross-entropy loss.</param>
/// <param name="Correct">argmax of the logits equals the label.</param>
public sealed record Measurements(double[] Margin, double[] Loss, bool[] Correct)
{
    public double MeanLoss => Loss.Average();
    public double Accuracy => Correct.Count(c => c) / (double)Correct.Length;

    /// <summary>Evaluates a model (eval mode, no grad) on every example of a dataset.</summary>
    public static Measurements Of(nn.Module<Tensor, Tensor> model, LabeledDataset data, int batchSize = 1000)
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
                var logits = model.forward(data.Inputs(idx, device)).to_type(ScalarType.Float64);
                var y = data.Targets(idx, device);
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
}
