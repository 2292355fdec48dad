using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>Fact tracing's bookkeeping: document scores from sequence scores, source ranks, recall, BM25.
/// (The end-to-end check, a tiny GPT trained on the planted-fact corpus, is tests/lm/run.sh.)</summary>
public class TextFactTracingTests
{
    [Fact]
    public void RecallAndBm25OnAHandMadeExample()
    {
        var docs = new[] { new TextDocument("the cat sat", "x"), new TextDocument("a dog ran far", "x"), new TextDocument("cat and dog", "x") };
        var s = TextFactTracing.Bm25(new[] { "dog ran" }, docs);
        Assert.True(s[0, 1] > s[0, 2] && s[0, 2] > 0 && s[0, 0] == 0);
        var ranks = TextFactTracing.SourceRanks(new double[,] { { 1, 3, 2 }, { 5, 5, 0 } }, new[] { new PlantedFact("a", "b", 2), new PlantedFact("c", "d", 0) });
        Assert.Equal(new[] { 2, 2 }, ranks);    // a tie counts against the source
        Assert.Equal(0.0, TextFactTracing.RecallAt(ranks, 1));
        Assert.Equal(1.0, TextFactTracing.RecallAt(ranks, 2));
    }

    [Fact]
    public void DocumentScoresSumTheSequencesOfEachDocument()
    {
        var docs = new[] { new TextDocument("abcdefg", "x"), new TextDocument("hi", "x"), new TextDocument("jk", "x") };
        var ds = TextDataset.Pack("t", docs, new ByteTokenizer(), 4, TextPacking.Documents);
        Assert.Equal(4, ds.Count);   // doc 0 fills two sequences
        var scores = torch.tensor(new double[] { 1, 2, 4, 8, -1, 0, 3, 5 }, new long[] { 2, 4 });
        var d = TextFactTracing.DocumentScores(scores, ds);
        Assert.Equal(new double[] { 3, 4, 8 }, new[] { d[0, 0], d[0, 1], d[0, 2] });
        Assert.Equal(new double[] { -1, 3, 5 }, new[] { d[1, 0], d[1, 1], d[1, 2] });
    }
}
