using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>The LDS of a language model: a query's target is the summed log-probability of its scored
/// tokens (only the completion of a prompt/completion query), checked against a per-position float64
/// evaluation of the same model and of the models retrained on each subset.</summary>
public class LdsTextTests
{
    const int Seq = 24;

    static readonly string[] Sentences =
    {
        "the cat sat on the mat.", "a dog ran in the park.", "the sun is hot today.", "we ate bread and jam.",
        "rain fell on the roof.", "the owl sees at night.", "my kite flew so high.", "the sea is deep and blue.",
        "birds sing in the tree.", "snow is cold and white.", "he reads a long book.", "the fox hid in a den.",
        "she drew a red boat.", "a bee made some honey.", "the bus came at noon.", "ice melts in the sun.",
    };

    static TextDataset Corpus() =>
        TextDataset.Pack("train", Sentences.Select(s => new TextDocument(s, "test")).ToList(), new ByteTokenizer(), Seq, TextPacking.Documents);

    static TextDataset Prompts(TextDataset train) => TextDataset.PromptCompletions(train.Tokenizer, Seq,
        new[] { ("the cat sat on", " the mat."), ("snow is", " cold and white."), ("a bee made", " some honey.") }, "queries");

    static ModelSpec Spec(TextDataset d) => ModelSpec.For("gpt", 1, 1, Seq, d.NumClasses, new[] { 8, 1, 2 });

    /// <summary>Σ over scored positions t of logsumexp(logits_t) − logits_t[next token], each sequence
    /// run through the model alone, the log-softmax by hand in float64.</summary>
    static double[] OracleLosses(nn.Module<Tensor, Tensor> model, TextDataset data)
    {
        model.eval();
        var r = new double[data.Count];
        using var _ = no_grad();
        for (int i = 0; i < data.Count; i++)
        {
            using var scope = NewDisposeScope();
            var logits = model.forward(data.Inputs(new[] { i })).to_type(ScalarType.Float64).squeeze(0).data<double>().ToArray();
            int v = data.NumClasses;
            for (int t = 0; t < data.SequenceLength; t++)
            {
                if (!data.IsScored(i, t)) continue;
                int y = data.Token(i, t + 1).Id;
                double max = double.NegativeInfinity;
                for (int k = 0; k < v; k++) max = Math.Max(max, logits[t * v + k]);
                double z = 0;
                for (int k = 0; k < v; k++) z += Math.Exp(logits[t * v + k] - max);
                r[i] += max + Math.Log(z) - logits[t * v + y];
            }
        }
        return r;
    }

    [Fact]
    public void SequenceMeasurementIsTheSummedNegativeLogProbabilityOfTheScoredTokens()
    {
        int seed = TestSeed.For();
        var train = Corpus();
        var prompts = Prompts(train);
        torch.manual_seed(seed);
        using var model = Spec(train).Create();
        foreach (var data in new[] { train, prompts })
        {
            var m = Measurements.Of(model, data, batchSize: 5);
            var oracle = OracleLosses(model, data);
            for (int i = 0; i < data.Count; i++)
            {
                Assert.True(Math.Abs(m.Loss[i] - oracle[i]) <= 1e-4 * (1 + Math.Abs(oracle[i])), $"{data.Name} {i}: {m.Loss[i]} vs oracle {oracle[i]} ({TestSeed.Describe()})");
                Assert.True(double.IsNaN(m.Margin[i]), "a token sequence has no margin");
            }
        }
        // A prompt/completion query counts only its completion: less than the whole sequence's loss.
        var all = TextDataset.Pack("whole", new[] { new TextDocument("the cat sat on the mat.", "t") }, train.Tokenizer, Seq, TextPacking.Documents);
        Assert.True(Measurements.Of(model, prompts).Loss[0] < Measurements.Of(model, all).Loss[0]);
    }

    [Fact]
    public void LdsTargetsOfATextRunAreTheLogProbabilitiesOfModelsRetrainedOnEachSubset()
    {
        int seed = TestSeed.For() % 100000;
        var train = Corpus();
        var queries = Prompts(train);
        var spec = Spec(train);
        var o = new TrainOptions { Epochs = 2, BatchSize = 4, LearningRate = 0.05, WeightDecay = 0, Seed = seed };
        using var dir = new TempDir();
        var run = new LdsRun(dir.Path, spec, o, train, queries, new LdsOptions { Subsets = 3, Seed = 5 });
        run.Run();
        var targets = run.LoadTargets();
        var logp = targets.NegativeLosses();
        for (int j = 0; j < 3; j++)
        {
            var subset = train.Subset(LdsSubsets.Indices(targets.Masks[j]));
            Assert.Equal(LdsSubsets.SubsetSize(train.Count, 0.5), subset.Count);
            using var model = new Trainer(o with { Seed = Seeds.Derive(o.Seed, j, 0) }).Train(spec, subset, null, null).Model;
            var oracle = OracleLosses(model, queries);
            for (int q = 0; q < queries.Count; q++)
            {
                Assert.True(Math.Abs(logp[j, q] + oracle[q]) <= 1e-4 * (1 + Math.Abs(oracle[q])), $"subset {j}, query {q}: target {logp[j, q]} vs −oracle {-oracle[q]} ({TestSeed.Describe()})");
                Assert.True(double.IsNaN(targets.Margins[j, q]));
            }
        }

        // Each subset's scored tokens: its sequences' non-ignored targets.
        var counted = LdsSubsets.ScoredTokens(train, targets.Masks);
        for (int j = 0; j < 3; j++)
        {
            using var y = train.Targets(LdsSubsets.Indices(targets.Masks[j]));
            Assert.Equal(y.ne(TextDataset.Ignored).sum().item<long>(), counted[j]);
        }

        // The LDS is taken on the log-probabilities; a margin target is refused.
        using var scores = torch.randn(new long[] { queries.Count, train.Count }, generator: new torch.Generator((ulong)seed));
        var ev = new LdsEvaluation(run, QueryMeasurement.Loss);
        ev.Add("m", scores);
        Assert.Equal(Lds.Score(scores, targets.Masks, logp).PerQuery, ev.Results["m"].PerQuery);
        var e = Assert.Throws<InfluenceSharpException>(() => new LdsEvaluation(run, QueryMeasurement.Margin));
        Assert.Contains("no margin", e.Message);

        // The cache is keyed by the queries: the test-sequence queries are another cache.
        var other = Assert.Throws<InfluenceSharpException>(() => new LdsRun(dir.Path, spec, o, train, train.Subset(new[] { 0, 1 }), new LdsOptions { Subsets = 3, Seed = 5 }));
        Assert.Contains("query_fingerprint", other.Message);
    }
}
