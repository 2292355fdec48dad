using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Tests.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Evaluation;

public class ValidationAttributionTests
{
    /// <summary>A method that returns a fixed matrix in blocks of 2 training examples (checks the
    /// streaming over training blocks and validation chunks against hand-computed sums).</summary>
    sealed class FixedScores(double[,] m) : IAttributionMethod
    {
        public string Name => "fixed";
        public int Calls { get; private set; }
        public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
        {
            Calls++;
            var rows = ((SubsetDataset)queries).Indices;
            for (int off = 0; off < train.Count; off += 2)
            {
                int len = Math.Min(2, train.Count - off);
                var v = new double[rows.Count * len];
                for (int q = 0; q < rows.Count; q++)
                    for (int j = 0; j < len; j++) v[q * len + j] = m[rows[q], off + j];
                using var b = torch.tensor(v, new long[] { rows.Count, len });
                sink(off, b);
            }
        }
        public double[] SelfInfluence(IDataset train) => throw new NotSupportedException();
    }

    static IDataset Rows(int n) => new TensorPairDataset(torch.zeros(n, 1), torch.zeros(n, ScalarType.Int64));

    [Fact]
    public void GroupObjectivesOfAHandComputedCase()
    {
        // Five validation examples in three groups; losses give group means 2, 4, 4 (overall group mean 10/3).
        double[] losses = { 1, 3, 2, 6, 4 };
        int[] groups = { 0, 0, 1, 1, 2 };
        Assert.Equal(new[] { 2.0, 4.0, 4.0 }, ValidationAttribution.GroupMeanLosses(losses, groups, 3));
        Assert.Equal(1, ValidationAttribution.WorstGroup(losses, groups, 3));   // tie 1/2: lowest id
        Assert.Equal(new[] { 0.2, 0.2, 0.2, 0.2, 0.2 }, ValidationAttribution.Weights(CurationObjective.Mean, 5));
        Assert.Equal(new[] { 0, 0, 0.5, 0.5, 0 }, ValidationAttribution.Weights(CurationObjective.WorstGroup, 5, groups, 3, losses));
        Assert.Equal(new[] { 0, 0, 0, 0, 1.0 }, ValidationAttribution.Weights(CurationObjective.Group, 5, groups, 3, group: 2));
        var d3m = ValidationAttribution.Weights(CurationObjective.D3m, 5, groups, 3, losses);
        double[] expected = { -2.0 / 3, -2.0 / 3, 1.0 / 3, 1.0 / 3, 2.0 / 3 };   // (L̄_g − 10/3) / n_g
        for (int q = 0; q < 5; q++) Assert.Equal(expected[q], d3m[q], 12);
        // d3m-positive: the below-average group 0 gets weight 0 instead of −2/3.
        var positive = ValidationAttribution.Weights(CurationObjective.D3mPositive, 5, groups, 3, losses);
        double[] expectedPositive = { 0, 0, 1.0 / 3, 1.0 / 3, 2.0 / 3 };
        for (int q = 0; q < 5; q++) Assert.Equal(expectedPositive[q], positive[q], 12);
        Assert.Equal((CurationObjective.D3mPositive, -1), ValidationAttribution.ParseObjective("d3m-positive"));

        // Scores (5 validation rows x 3 training examples); s_i = Σ_q w_q M[q, i] by hand.
        var m = new double[,] { { 1, 0, -1 }, { 3, 2, 0 }, { 0, -4, 2 }, { 2, 0, 6 }, { -3, 1, 1 } };
        var method = new FixedScores(m);
        var mean = ValidationAttribution.Scores(method, Rows(5), Rows(3), ValidationAttribution.Weights(CurationObjective.Mean, 5), chunkSize: 2);
        Assert.Equal(3, method.Calls);   // 5 rows in chunks of 2
        Assert.Equal(new[] { 0.6, -0.2, 1.6 }, mean.Select(x => Math.Round(x, 12)).ToArray());
        var worst = ValidationAttribution.Scores(method, Rows(5), Rows(3), ValidationAttribution.Weights(CurationObjective.WorstGroup, 5, groups, 3, losses));
        Assert.Equal(new[] { 1.0, -2.0, 4.0 }, worst.Select(x => Math.Round(x, 12)).ToArray());
        var s = ValidationAttribution.Scores(method, Rows(5), Rows(3), d3m, chunkSize: 3);
        // i=0: −2/3·(1+3) + 1/3·(0+2) + 2/3·(−3) = −8/3 + 2/3 − 2 = −4
        // i=1: −2/3·(0+2) + 1/3·(−4+0) + 2/3·1 = −4/3 − 4/3 + 2/3 = −2
        // i=2: −2/3·(−1+0) + 1/3·(2+6) + 2/3·1 = 2/3 + 8/3 + 2/3 = 4
        Assert.Equal(new[] { -4.0, -2.0, 4.0 }, s.Select(x => Math.Round(x, 12)).ToArray());
        Assert.Equal(new[] { 0, 1, 2 }, ValidationAttribution.MostDetrimental(s));
        Assert.Equal(new[] { 2, 1, 0 }, ValidationAttribution.MostHelpful(s));
        // Worst-group weights are zero outside group 1: only those 2 rows are scored (one chunk).
        var only = new FixedScores(m);
        ValidationAttribution.Scores(only, Rows(5), Rows(3), ValidationAttribution.Weights(CurationObjective.WorstGroup, 5, groups, 3, losses), chunkSize: 2);
        Assert.Equal(1, only.Calls);
    }

    [Fact]
    public void EmptyGroupsAndBadObjectivesAreClearErrors()
    {
        var e = Assert.Throws<InfluenceSharpException>(() => ValidationAttribution.Weights(CurationObjective.D3m, 3, new[] { 0, 2, 2 }, 3, new double[] { 1, 1, 1 }));
        Assert.Contains("group 1 has no example", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => ValidationAttribution.Weights(CurationObjective.WorstGroup, 3, new[] { 0, 1 }, 2, new double[] { 1, 1, 1 }));
        Assert.Contains("group label per validation example", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => ValidationAttribution.ParseObjective("worst"));
        Assert.Contains("choose mean, worst-group, d3m", e.Message);
        Assert.Equal((CurationObjective.Group, 4), ValidationAttribution.ParseObjective("group:4"));
    }

    /// <summary>For real methods on a tiny float64 model: the streamed, weighted aggregate equals the
    /// weighted sum of the rows of the method's own pairwise matrix (summed here in float64), for
    /// random weights and a chunk size that splits the validation set unevenly.</summary>
    [Fact]
    public void AggregateEqualsWeightedSumOfPairwiseScoresForSeveralMethods()
    {
        int seed = TestSeed.For();
        torch.manual_seed(seed);
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        var model2 = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(23, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 23 }));
        var val = new TensorPairDataset(torch.randn(11, 4, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 11 }));
        var rng = new Random(seed);
        var weights = Enumerable.Range(0, 11).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
        weights[3] = 0;   // a skipped row
        var task = new ClassificationTask();
        var methods = new IAttributionMethod[]
        {
            new InfluenceFunction(model, task, new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 8, Seed = 1 }).Fit(train)!,
                new ScoreOptions { TrainBatchSize = 5 }),
            new InfluenceFunction(model, task, new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Identity, TrainBatchSize = 8 }).Fit(train)!,
                new ScoreOptions { TrainBatchSize = 5 }),
            new TracInCP(new[] { new TracInCheckpoint(model, 0.5), new TracInCheckpoint(model2, 0.1) }, task, new TracInOptions { TrainBatchSize = 7 }),
        };
        foreach (var method in methods)
        {
            using var full = method.PairwiseMatrix(val, train);
            var mat = full.to_type(ScalarType.Float64).data<double>().ToArray();
            var oracle = new double[23];
            for (int q = 0; q < 11; q++)
                for (int i = 0; i < 23; i++) oracle[i] += weights[q] * mat[q * 23 + i];
            var got = ValidationAttribution.Scores(method, val, train, weights, chunkSize: 4);
            double scale = oracle.Max(Math.Abs);
            Assert.True(scale > 0, $"{method.Name}: all-zero scores ({TestSeed.Describe()})");
            for (int i = 0; i < 23; i++)
                Assert.True(Math.Abs(got[i] - oracle[i]) <= 1e-9 * scale, $"{method.Name} train {i}: {got[i]} vs oracle {oracle[i]} ({TestSeed.Describe()})");
        }
    }
}

public class CurationStatisticsTests
{
    [Fact]
    public void AccuraciesBalancingAndStandardErrorsOfAHandComputedCase()
    {
        // 6 test examples in groups 0,0,1,1,1,2 (group 3 absent): right = 1,0,1,1,0,1.
        var (acc, groups) = CurationRun.Accuracies("101101", new[] { 0, 0, 1, 1, 1, 2 }, 4);
        Assert.Equal(4 / 6.0, acc, 12);
        Assert.Equal(0.5, groups[0], 12);
        Assert.Equal(2 / 3.0, groups[1], 12);
        Assert.Equal(1.0, groups[2], 12);
        Assert.True(double.IsNaN(groups[3]));

        // Standard error = sample std / sqrt(n): values 1, 2, 3 -> std 1, s.e. 1/sqrt(3).
        var m = MeanSe.Of(new[] { 1.0, 2.0, 3.0 });
        Assert.Equal(2.0, m.Mean, 12);
        Assert.Equal(1 / Math.Sqrt(3), m.StandardError, 12);
        Assert.Equal(0, MeanSe.Of(new[] { 5.0 }).StandardError);

        // Balancing: groups of sizes 5, 2, 0, 3 -> every non-empty group keeps 2 (seeded, deterministic).
        int[] trainGroups = { 0, 0, 1, 3, 0, 3, 0, 1, 3, 0 };
        var removed = CurationRun.BalanceRemoved(trainGroups, 4, 7);
        Assert.Equal(removed, CurationRun.BalanceRemoved(trainGroups, 4, 7));
        Assert.Equal(10 - 3 * 2, removed.Length);
        Assert.Equal(removed.Order(), removed);
        var kept = Enumerable.Range(0, 10).Except(removed).ToArray();
        foreach (int g in new[] { 0, 1, 3 }) Assert.Equal(2, kept.Count(i => trainGroups[i] == g));
        var draws = Enumerable.Range(0, 8).Select(s => string.Join(",", CurationRun.BalanceRemoved(trainGroups, 4, s))).Distinct().Count();
        Assert.True(draws > 1, "balancing does not depend on the seed");
    }

    [Fact]
    public void RemovedHashIdentifiesTheSetNotItsOrder()
    {
        var a = new CurationSetting("a", "random", null, 3, new[] { 5, 1, 9 });
        var b = a with { Removed = new[] { 9, 5, 1 } };
        var c = a with { Removed = new[] { 9, 5, 2 } };
        Assert.Equal(a.RemovedHash(), b.RemovedHash());
        Assert.NotEqual(a.RemovedHash(), c.RemovedHash());
    }
}
