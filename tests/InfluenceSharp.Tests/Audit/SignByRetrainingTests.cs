using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Audit;

/// <summary>
/// The sign convention, end to end through retraining, for every method: on a convex problem
/// (logistic regression), removing the training examples a method calls most helpful for a query set
/// and retraining must raise the queries' loss more than removing as many random examples, and
/// removing the most harmful must raise it less than random removal (it usually lowers it).
/// A method with its sign flipped swaps the two and fails.
/// </summary>
public class SignByRetrainingTests
{
    private readonly ITestOutputHelper output;
    public SignByRetrainingTests(ITestOutputHelper output) { this.output = output; }

    static readonly ModelSpec Spec = ModelSpec.For("logreg", 1, 28, 28, 10);
    static readonly TrainOptions Train = new() { Epochs = 6, BatchSize = 25, LearningRate = 0.002, Seed = 0 };

    [Fact]
    public void RemovingTheMostHelpfulHurtsTheQueriesMoreThanRandomAndTheMostHarmfulLess()
    {
        var s = Embedded.Split;
        var train = s.Train.Subset(DataSource.BalancedSubset(s.Train, 200, 1));
        var queries = s.Test.Subset(Enumerable.Range(0, 30).ToArray());
        using var dir = new TempDir();
        var full = new Trainer(Train).Train(Spec, train, null, dir.Path);
        var model = full.Model;
        var task = new ClassificationTask();

        var scores = new Dictionary<string, Tensor>();
        foreach (var strategy in new[] { FactorStrategy.Identity, FactorStrategy.Diagonal, FactorStrategy.Kfac, FactorStrategy.Ekfac })
        {
            var factors = new FactorFitter(model, task, new FactorOptions { Strategy = strategy, TrainBatchSize = 100 }).Fit(train)!;
            scores[strategy.ToString().ToLowerInvariant()] = new InfluenceFunction(model, task, factors).PairwiseMatrix(queries, train);
        }
        var ckpts = TracInCheckpoint.From(full.Checkpoints);
        using (var m = new TracInCP(ckpts, task)) scores["tracin"] = m.PairwiseMatrix(queries, train);
        using (var m = new TracInCPFast(ckpts, task)) scores["tracin-last"] = m.PairwiseMatrix(queries, train);
        using (var m = GradDot.Create(model, task)) scores["graddot"] = m.PairwiseMatrix(queries, train);
        using (var m = new Trak(new[] { model }, new TrakOptions { Projection = new() { Layout = Features.ProjectionLayout.Dense, Dim = 512 } }))
            scores["trak"] = m.PairwiseMatrix(queries, train);

        // Retrain without each removal set (once per distinct set: identical sets share a result).
        const int k = 30;
        var cache = new Dictionary<string, double>();
        double QueryLossWithout(int[] removed)
        {
            string key = string.Join(",", removed.Order());
            if (cache.TryGetValue(key, out var v)) return v;
            var kept = Enumerable.Range(0, train.Count).Except(removed).ToArray();
            using var m = new Trainer(Train).Train(Spec, train.Subset(kept), null, null).Model;
            return cache[key] = Measurements.Of(m, queries).MeanLoss;
        }
        double baseline = QueryLossWithout(Array.Empty<int>());
        double random = QueryLossWithout(Removal.Set(RemovalKind.Random, new double[train.Count], k, seed: 1)) - baseline;
        var failures = new List<string>();
        foreach (var (name, sc) in scores)
        {
            var summed = Removal.SummedScores(sc);
            double helpful = QueryLossWithout(Removal.Set(RemovalKind.Helpful, summed, k)) - baseline;
            double harmful = QueryLossWithout(Removal.Set(RemovalKind.Harmful, summed, k)) - baseline;
            string line = $"{name,-12} query-loss change: helpful {helpful:+0.000;-0.000}, random {random:+0.000;-0.000}, harmful {harmful:+0.000;-0.000}";
            output.WriteLine(line);
            if (!(helpful > random + 0.1 && harmful < random - 0.05)) failures.Add(line);
        }
        Assert.True(failures.Count == 0, "sign convention violated:\n" + string.Join("\n", failures));
    }
}
