using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.KnnShapley;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>KNN-Shapley's recursion against the Shapley value computed by enumerating every subset.</summary>
public class KnnShapleyTests
{
    /// <summary>A model whose last Linear layer sees the inputs themselves: the features are the inputs.</summary>
    static nn.Module<Tensor, Tensor> Model(int d) =>
        nn.Sequential(("body", nn.Identity()), ("fc", nn.Linear(d, 3))).to(ScalarType.Float64);

    /// <summary>U(S) = (1/K) Σ over the min(K, |S|) nearest members of S of 1[label = the query's].</summary>
    static double Utility(IEnumerable<int> subset, double[] dist, long[] labels, long label, int k)
    {
        var near = subset.OrderBy(i => dist[i]).Take(k);
        return near.Count(i => labels[i] == label) / (double)k;
    }

    static double[] BruteForce(double[] dist, long[] labels, long label, int k)
    {
        int n = dist.Length;
        var values = new double[n];
        double Fact(int m) => m <= 1 ? 1 : m * Fact(m - 1);
        for (int i = 0; i < n; i++)
        {
            var others = Enumerable.Range(0, n).Where(j => j != i).ToArray();
            for (int mask = 0; mask < 1 << others.Length; mask++)
            {
                var s = others.Where((_, b) => (mask >> b & 1) == 1).ToList();
                double w = Fact(s.Count) * Fact(n - s.Count - 1) / Fact(n);
                values[i] += w * (Utility(s.Append(i), dist, labels, label, k) - Utility(s, dist, labels, label, k));
            }
        }
        return values;
    }

    static double[] Distances(Tensor x, Tensor q) => Oracles.Flat(torch.cdist(q.unsqueeze(0), x).squeeze(0));

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ValuesEqualTheBruteForceShapleyValues(int k)
    {
        torch.manual_seed(TestSeed.For() + k);
        var x = torch.randn(8, 3, dtype: ScalarType.Float64);
        var y = torch.tensor(new long[] { 0, 1, 2, 0, 1, 0, 2, 0 });
        var q = torch.randn(3, 3, dtype: ScalarType.Float64);
        var qy = torch.tensor(new long[] { 0, 1, 2 });
        var m = new KnnShapley(Model(3), new KnnShapleyOptions { Neighbors = k, TrainBatchSize = 3, QueryBlock = 2 });
        var scores = m.PairwiseMatrix(new TensorPairDataset(q, qy), new TensorPairDataset(x, y));
        var labels = y.data<long>().ToArray();
        for (int t = 0; t < 3; t++)
        {
            var expected = BruteForce(Distances(x, q[t]), labels, t, k);
            Assert.Contains(expected, v => Math.Abs(v) > 1e-3);
            var actual = Oracles.Flat(scores[t]);
            for (int i = 0; i < 8; i++)
                Assert.True(Math.Abs(actual[i] - expected[i]) < 1e-6, $"K = {k}, query {t}, example {i}: {actual[i]} vs brute force {expected[i]}");
            // Efficiency: the values sum to U(all) − U(∅).
            Assert.Equal(Utility(Enumerable.Range(0, 8), Distances(x, q[t]), labels, t, k), actual.Sum(), 5);
        }
    }

    [Fact]
    public void SelfInfluenceIsMinusTheMeanValueOverTheOtherExamples()
    {
        torch.manual_seed(TestSeed.For());
        var x = torch.randn(7, 2, dtype: ScalarType.Float64);
        var y = torch.tensor(new long[] { 0, 1, 0, 1, 1, 0, 2 });
        var labels = y.data<long>().ToArray();
        const int k = 2;
        var self = new KnnShapley(Model(2), new KnnShapleyOptions { Neighbors = k, QueryBlock = 3 }).SelfInfluence(new TensorPairDataset(x, y));
        var expected = new double[7];
        for (int q = 0; q < 7; q++)
        {
            var rest = Enumerable.Range(0, 7).Where(i => i != q).ToArray();
            var d = Distances(x, x[q]);
            var v = BruteForce(rest.Select(i => d[i]).ToArray(), rest.Select(i => labels[i]).ToArray(), labels[q], k);
            for (int j = 0; j < rest.Length; j++) expected[rest[j]] -= v[j] / 6;
        }
        for (int i = 0; i < 7; i++) Assert.True(Math.Abs(self[i] - expected[i]) < 1e-12, $"example {i}: {self[i]} vs {expected[i]}");
    }
}
