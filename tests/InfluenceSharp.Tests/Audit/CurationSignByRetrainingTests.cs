using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using Xunit.Abstractions;

namespace InfluenceSharp.Tests.Audit;

/// <summary>
/// The curation score's sign, end to end through retraining: on logistic regression, with the
/// validation objective J = Σ_q w_q L(q) (weights fixed from the full model), removing the examples
/// with the most negative s_i (detrimental) must lower J below what random removal gives, and
/// removing the most positive (helpful) must raise it above. A flipped sign swaps them and fails.
/// </summary>
public class CurationSignByRetrainingTests
{
    private readonly ITestOutputHelper output;
    public CurationSignByRetrainingTests(ITestOutputHelper output) { this.output = output; }

    [Fact]
    public void RemovingDetrimentalExamplesLowersTheObjectiveAndRemovingHelpfulOnesRaisesIt()
    {
        var spec = ModelSpec.For("logreg", 1, 28, 28, 10);
        var opts = new TrainOptions { Epochs = 6, BatchSize = 25, LearningRate = 0.002, Seed = 0 };
        var s = Embedded.Split;
        var train = s.Train.Subset(DataSource.BalancedSubset(s.Train, 200, 1));
        var val = s.Test.Subset(Enumerable.Range(0, 80).ToArray());
        var groups = val.Labels;   // group = class
        using var model = new Trainer(opts).Train(spec, train, null, null).Model;
        var task = new ClassificationTask();
        var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = 100 }).Fit(train)!;
        var method = new InfluenceFunction(model, task, factors);
        var losses = Measurements.Of(model, val).Loss;

        double J(double[] w, int[] removed)
        {
            var kept = Enumerable.Range(0, train.Count).Except(removed).ToArray();
            using var m = new Trainer(opts).Train(spec, train.Subset(kept), null, null).Model;
            var l = Measurements.Of(m, val).Loss;
            return w.Select((x, q) => x * l[q]).Sum();
        }
        const int k = 30;
        var failures = new List<string>();
        foreach (var objective in new[] { CurationObjective.Mean, CurationObjective.WorstGroup, CurationObjective.D3m })
        {
            var w = ValidationAttribution.Weights(objective, val.Count, groups, 10, losses);
            var sc = ValidationAttribution.Scores(method, val, train, w, chunkSize: 32);
            double full = J(w, Array.Empty<int>());
            double detrimental = J(w, ValidationAttribution.MostDetrimental(sc).Take(k).ToArray()) - full;
            double helpful = J(w, ValidationAttribution.MostHelpful(sc).Take(k).ToArray()) - full;
            double random = J(w, Removal.Set(RemovalKind.Random, new double[train.Count], k, seed: 1)) - full;
            string line = $"{objective,-10} objective change: detrimental {detrimental:+0.0000;-0.0000}, random {random:+0.0000;-0.0000}, helpful {helpful:+0.0000;-0.0000}";
            output.WriteLine(line);
            if (!(detrimental < random && random < helpful)) failures.Add(line);
        }
        Assert.True(failures.Count == 0, "curation sign violated:\n" + string.Join("\n", failures));
    }
}
