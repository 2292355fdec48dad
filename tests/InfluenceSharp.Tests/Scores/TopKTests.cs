using InfluenceSharp.Scores;
using TorchSharp;

namespace InfluenceSharp.Tests.Scores;

public class TopKTests
{
    /// <summary>Reference: sort each full row (score, then lower index first).</summary>
    static (int[] Idx, double[] Score) Sorted(float[,] m, int q, int k, bool descending)
    {
        int n = m.GetLength(1);
        var idx = Enumerable.Range(0, n)
            .OrderBy(i => descending ? -(double)m[q, i] : m[q, i]).ThenBy(i => i).Take(k).ToArray();
        return (idx, idx.Select(i => (double)m[q, i]).ToArray());
    }

    [Fact]
    public void StreamingEqualsSortingTheFullMatrixIncludingTiesAndKAboveN()
    {
        int seed = TestSeed.For();
        var rng = new Random(seed);
        for (int trial = 0; trial < 200; trial++)
        {
            int nq = rng.Next(1, 5), n = rng.Next(1, 60), k = rng.Next(1, n + 6);
            bool ties = trial % 2 == 0;
            var m = new float[nq, n];
            for (int q = 0; q < nq; q++)
                for (int i = 0; i < n; i++)
                    m[q, i] = ties ? MathF.Round((float)rng.NextDouble() * 4 - 2) : (float)(rng.NextDouble() * 2 - 1);
            // Column blocks of random widths, fed in a random order, through the three entry points.
            var starts = new List<int> { 0 };
            while (starts[^1] < n) starts.Add(Math.Min(n, starts[^1] + rng.Next(1, 12)));
            var blocks = Enumerable.Range(0, starts.Count - 1).OrderBy(_ => rng.Next()).ToArray();
            var topk = new StreamingTopK(nq, k);
            foreach (int b in blocks)
            {
                int c0 = starts[b], w = starts[b + 1] - c0;
                var block = new float[nq * w];
                for (int q = 0; q < nq; q++) for (int j = 0; j < w; j++) block[q * w + j] = m[q, c0 + j];
                switch (rng.Next(3))
                {
                    case 0: topk.Add(block, c0); break;
                    case 1: topk.Add(block.Select(v => (double)v).ToArray(), c0); break;
                    default: using (var t = torch.tensor(block, new long[] { nq, w })) topk.Add(t, c0); break;
                }
            }
            Assert.Equal(n, topk.ColumnsSeen);
            var r = topk.Result();
            for (int q = 0; q < nq; q++)
            {
                var (pi, ps) = Sorted(m, q, k, descending: true);
                var (oi, os) = Sorted(m, q, k, descending: false);
                Assert.Equal(Math.Min(k, n), r.Proponents[q].Length);
                Assert.True(pi.SequenceEqual(r.Proponents[q]), $"seed {seed} trial {trial} q {q}: proponents {string.Join(",", r.Proponents[q])} != {string.Join(",", pi)}");
                Assert.True(oi.SequenceEqual(r.Opponents[q]), $"seed {seed} trial {trial} q {q}: opponents");
                Assert.Equal(ps, r.ProponentScores[q]);
                Assert.Equal(os, r.OpponentScores[q]);
            }
        }
    }

    [Fact]
    public void TiesGoToTheLowerTrainIndexWhateverTheBlockOrder()
    {
        var topk = new StreamingTopK(1, 2);
        topk.Add(new float[] { 5, 5, 1 }, 3);   // train 3, 4, 5
        topk.Add(new float[] { 5, 1, 1 }, 0);   // train 0, 1, 2
        var r = topk.Result();
        Assert.Equal(new[] { 0, 3 }, r.Proponents[0]);
        Assert.Equal(new[] { 1, 2 }, r.Opponents[0]);
    }

    [Fact]
    public void RejectsNaNAndMisshapedBlocks()
    {
        var topk = new StreamingTopK(2, 3);
        var e = Assert.Throws<InfluenceSharpException>(() => topk.Add(new[] { 1f, float.NaN, 2f, 3f }, 10));
        Assert.Contains("train example 11", e.Message);
        Assert.Throws<InfluenceSharpException>(() => topk.Add(new[] { 1f, 2f, 3f }, 0));
        using var t = torch.rand(3, 4);
        Assert.Throws<InfluenceSharpException>(() => topk.Add(t, 0));
    }
}
