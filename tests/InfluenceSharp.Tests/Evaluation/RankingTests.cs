using InfluenceSharp.Evaluation;

namespace InfluenceSharp.Tests.Evaluation;

public class RankingTests
{
    [Fact]
    public void RanksAverageTies()
    {
        Assert.Equal(new[] { 2, 3.5, 3.5, 1 }, Ranking.Ranks(new double[] { 10, 20, 20, 5 }));
        Assert.Equal(new[] { 2.0, 2, 2 }, Ranking.Ranks(new double[] { 7, 7, 7 }));
    }

    [Fact]
    public void PearsonAndSpearmanMatchHandComputedValues()
    {
        // x = 1,2,3; y = 1,2,4: sxy = 3, sxx = 2, syy = 14/3, r = 3 / sqrt(28/3).
        Assert.Equal(3 / Math.Sqrt(28.0 / 3), Ranking.Pearson(new double[] { 1, 2, 3 }, new double[] { 1, 2, 4 }), 12);
        // y = 5,6,7,8,7 has ranks 1,2,3.5,5,3.5: sxy = 8, sxx = 10, syy = 9.5, rho = 8 / sqrt(95).
        Assert.Equal(8 / Math.Sqrt(95), Ranking.Spearman(new double[] { 1, 2, 3, 4, 5 }, new double[] { 5, 6, 7, 8, 7 }), 12);
        // Monotone but non-linear: Spearman 1, Pearson below 1; reversed: -1.
        var x = new double[] { 0.3, 1.7, 2.2, 9.1, 4.4 };
        Assert.Equal(1, Ranking.Spearman(x, x.Select(v => Math.Exp(v)).ToArray()), 12);
        Assert.True(Ranking.Pearson(x, x.Select(v => Math.Exp(v)).ToArray()) < 0.99);
        Assert.Equal(-1, Ranking.Spearman(x, x.Select(v => -v * v).ToArray()), 12);
        Assert.True(double.IsNaN(Ranking.Spearman(x, new double[] { 2, 2, 2, 2, 2 })));
        Assert.Throws<InfluenceSharpException>(() => Ranking.Spearman(x, new double[] { 1, 2 }));
        Assert.Throws<InfluenceSharpException>(() => Ranking.Pearson(new double[] { 1, double.NaN }, new double[] { 1, 2 }));
    }

    [Fact]
    public void RocAucMatchesHandCountedPairs()
    {
        // Positives 0.9 and 0.8; negatives 0.8, 0.3, 0.1. 0.9 beats 3; 0.8 ties one (1/2) and beats 2: 5.5 of 6 pairs.
        Assert.Equal(5.5 / 6, Ranking.RocAuc(new[] { 0.9, 0.8, 0.8, 0.3, 0.1 }, new[] { true, false, true, false, false }), 12);
        Assert.Throws<InfluenceSharpException>(() => Ranking.RocAuc(new[] { 0.1, 0.2 }, new[] { true, true }));
    }

    [Fact]
    public void RocAucIsOneForPerfectZeroForReversedAndAboutHalfForRandom()
    {
        var rng = new Random(12345);
        int n = 20000;
        var labels = Enumerable.Range(0, n).Select(_ => rng.NextDouble() < 0.2).ToArray();
        var perfect = labels.Select(b => (b ? 1.0 : 0.0) + rng.NextDouble() * 0.5).ToArray();
        Assert.Equal(1, Ranking.RocAuc(perfect, labels), 12);
        Assert.Equal(0, Ranking.RocAuc(perfect.Select(v => -v).ToArray(), labels), 12);
        double random = Ranking.RocAuc(Enumerable.Range(0, n).Select(_ => rng.NextDouble()).ToArray(), labels);
        Assert.InRange(random, 0.48, 0.52);
        // All scores tied: every pair counts 1/2.
        Assert.Equal(0.5, Ranking.RocAuc(new double[n], labels), 12);
    }
}

public class MislabelDetectionTests
{
    [Fact]
    public void CurveTableAndAucMatchAHandRankedExample()
    {
        // Descending: 0.9 (idx 1, corrupted), 0.8, 0.7, 0.6, 0.5 (idx 4, corrupted), 0.4, 0.3, 0.2, 0.1, 0.0 (idx 9, corrupted).
        var s = new[] { 0.1, 0.9, 0.3, 0.8, 0.5, 0.2, 0.7, 0.4, 0.6, 0.0 };
        var bad = new bool[10];
        bad[1] = bad[4] = bad[9] = true;
        var r = MislabelDetection.Evaluate(s, bad);
        Assert.Equal(101, r.Found.Length);
        Assert.Equal(0, r.Found[0]);
        Assert.Equal(1, r.Found[100]);
        Assert.Equal(0.5, r.Inspected[50]);
        Assert.Equal(1.0 / 3, r.Found[10], 12);  // top 1
        Assert.Equal(1.0 / 3, r.Found[40], 12);  // top 4
        Assert.Equal(2.0 / 3, r.Found[50], 12);  // top 5
        Assert.Equal(2.0 / 3, r.Found[94], 12);  // top 9 (9.4 rounds to 9)
        Assert.Equal(1, r.Found[95], 12);       // 9.5 rounds up to all 10
        Assert.Equal(0, r.Found[4], 12);        // 0.4 example rounds to 0
        Assert.Equal(1.0 / 3, r.Table[0.05], 12); // 0.5 rounds up to 1 example
        Assert.Equal(1.0 / 3, r.Table[0.3], 12);
        Assert.Equal(11.0 / 21, r.RocAuc, 12); // corrupted beat 7 + 4 + 0 of 21 (corrupted, clean) pairs
        Assert.Equal(3, r.Corrupted);
        for (int i = 1; i < 101; i++) Assert.True(r.Found[i] >= r.Found[i - 1]);
    }

    [Fact]
    public void TiedScoresCountTheExpectedNumberFound()
    {
        // All tied: any order is as likely, so inspecting c of 8 finds c/8 of the corrupted ones in expectation.
        var bad = new[] { false, true, false, false, true, false, false, false };
        var r = MislabelDetection.Evaluate(new double[] { 3, 3, 3, 3, 3, 3, 3, 3 }, bad);
        Assert.Equal(0.5, r.Found[50], 12);
        Assert.Equal(1.0 / 8, r.Found[10], 12); // 0.8 rounds to 1 of 8
        Assert.Equal(0.5, r.RocAuc, 12);
        // A tie group straddling the cut: [9 (bad), 5, 5 (bad), 5, 1]: top 2 = 1 + 1/3.
        var r2 = MislabelDetection.Evaluate(new double[] { 9, 5, 5, 5, 1 }, new[] { true, false, true, false, false });
        Assert.Equal((1 + 1.0 / 3) / 2, r2.Found[40], 12);
        Assert.Equal(1, r2.Found[80], 12);
    }

    [Fact]
    public void PerfectScoresFindEverythingFirst()
    {
        var rng = TestSeed.Random();
        int n = 500;
        var bad = Enumerable.Range(0, n).Select(_ => rng.NextDouble() < 0.1).ToArray();
        bad[0] = true; bad[1] = false;
        int nb = bad.Count(b => b);
        var r = MislabelDetection.Evaluate(bad.Select(b => (b ? 10 : 0) + rng.NextDouble()).ToArray(), bad);
        Assert.Equal(1, r.RocAuc, 12);
        for (int p = 0; p <= 100; p++)
            Assert.Equal(Math.Min(1, Math.Round(p * n / 100.0, MidpointRounding.AwayFromZero) / nb), r.Found[p], 12);
        Assert.Throws<InfluenceSharpException>(() => MislabelDetection.Evaluate(new double[] { 1, 2 }, new[] { false, false }));
    }
}
