using System.Diagnostics;
using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

public enum RemovalKind { Helpful, Harmful, Random }

/// <summary>Settings of a counterfactual-removal experiment.</summary>
public sealed record RemovalOptions
{
    /// <summary>Numbers of training examples to remove.</summary>
    public int[] Ks { get; init; } = { 10, 50, 100 };
    /// <summary>Training seeds: every setting, and the full-data baseline, is trained once per seed.</summary>
    public int[] TrainSeeds { get; init; } = { 0, 1, 2 };
    /// <summary>Seed of the random removal sets.</summary>
    public int RandomSeed { get; init; }
    public RemovalKind[] Kinds { get; init; } = { RemovalKind.Helpful, RemovalKind.Harmful, RemovalKind.Random };
    /// <summary>How long each retraining trains: the run's epochs (default) or the full set's step count.</summary>
    public RetrainBudget Budget { get; init; } = RetrainBudget.Epochs;
}

/// <summary>Metrics of one trained model.</summary>
public sealed record RemovalMetrics(double QueryLoss, double QueryAccuracy, double TestAccuracy);

/// <summary>Mean and sample standard deviation (n − 1; 0 for a single value) over training seeds.</summary>
public sealed record MeanStd(double Mean, double Std)
{
    public static MeanStd Of(IReadOnlyList<double> v)
    {
        var (mean, std) = Statistics.MeanStd(v);
        return new MeanStd(mean, std);
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Mean:F4} ± {Std:F4}");
}

/// <summary>One removal setting. The changes are per seed (removed − baseline with the same
/// training seed), then mean and std over seeds; positive QueryLossChange = the queries got worse.</summary>
public sealed record RemovalSetting(RemovalKind Kind, int K, int[] Removed, RemovalMetrics[] PerSeed,
    MeanStd QueryLossChange, MeanStd QueryAccuracyChange, MeanStd TestAccuracyChange);

public sealed record RemovalResult(int[] TrainSeeds, RemovalMetrics[] Baseline, IReadOnlyList<RemovalSetting> Settings)
{
    public RemovalSetting Get(RemovalKind kind, int k) => Settings.FirstOrDefault(s => s.Kind == kind && s.K == k)
        ?? throw new InfluenceSharpException($"removal result has no setting {kind} k={k}");
}

/// <summary>
/// Counterfactual removal (TRAK's and the data-debiasing evaluation): remove the k training examples
/// that help a query set most (largest score summed over the queries), hurt it most (most negative
/// sum), or k random ones, retrain, and compare the queries' loss and accuracy and the test accuracy
/// with a full-data model trained with the same seed. Good attributions make "helpful" removal hurt
/// the queries much more than random removal.
/// </summary>
public static class Removal
{
    /// <summary>Summed score of each training example over the queries, in float64: [n_train].</summary>
    public static double[] SummedScores(Tensor scores)
    {
        if (scores.dim() != 2) throw new InfluenceSharpException($"removal: scores must be [n_query, n_train], got [{string.Join(", ", scores.shape)}]");
        using var scope = NewDisposeScope();
        var sum = scores.detach().cpu().to_type(ScalarType.Float64).sum(new long[] { 0 }, false, null);
        var v = sum.data<double>().ToArray();
        Ranking.CheckFinite(v, "removal: summed scores");
        return v;
    }

    /// <summary>The k training indices to remove, in removal order (most extreme first; ties by lower index).
    /// Random sets are uniform without replacement, seeded by (seed, k).</summary>
    public static int[] Set(RemovalKind kind, double[] summed, int k, int seed = 0)
    {
        int n = summed.Length;
        if (k < 0 || k >= n) throw new InfluenceSharpException($"removal: k = {k} must be in [0, {n}) for {n} training examples");
        var order = Enumerable.Range(0, n).ToArray();
        switch (kind)
        {
            case RemovalKind.Helpful:
                return order.OrderByDescending(i => summed[i]).ThenBy(i => i).Take(k).ToArray();
            case RemovalKind.Harmful:
                return order.OrderBy(i => summed[i]).ThenBy(i => i).Take(k).ToArray();
            default:
                var rng = new Random(Seeds.Derive(seed, k));
                for (int i = 0; i < k; i++)
                {
                    int j = i + rng.Next(n - i);
                    (order[i], order[j]) = (order[j], order[i]);
                }
                return order.Take(k).ToArray();
        }
    }

    /// <summary>Runs the experiment: the baseline and every (kind, k) setting, each with every training seed.</summary>
    /// <param name="scores">[n_query, n_train] scores of <paramref name="queries"/> against <paramref name="train"/>.</param>
    /// <param name="model">The architecture retrained for every setting.</param>
    /// <param name="training">Training settings; each retraining uses them with one of the training seeds.</param>
    /// <param name="train">The full training set that examples are removed from.</param>
    /// <param name="queries">The queries whose loss and accuracy change is measured.</param>
    /// <param name="test">The test set whose accuracy change is measured.</param>
    /// <param name="options">Removal sizes, kinds and seeds; null for the defaults.</param>
    /// <param name="log">Receives one line per finished retraining; null for none.</param>
    public static RemovalResult Run(Tensor scores, ModelSpec model, TrainOptions training, LabeledDataset train,
        LabeledDataset queries, LabeledDataset test, RemovalOptions? options = null, Action<string>? log = null)
    {
        var o = options ?? new RemovalOptions();
        if (o.TrainSeeds.Length == 0) throw new InfluenceSharpException("removal: no training seeds given");
        if (o.TrainSeeds.GroupBy(x => x).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new InfluenceSharpException($"--seeds: seed {twice.Key} is given {twice.Count()} times (one retraining would count as several); give each seed once");
        if (scores.dim() != 2 || scores.shape[0] != queries.Count || scores.shape[1] != train.Count)
            throw new InfluenceSharpException($"removal: scores are [{string.Join(", ", scores.shape)}] but {queries.Count} queries and {train.Count} training examples need [{queries.Count}, {train.Count}]");
        var summed = SummedScores(scores);
        training = RetrainBudgets.For(training, train.Count, o.Budget);
        var sets = (from kind in o.Kinds from k in o.Ks select (Kind: kind, K: k, Removed: Set(kind, summed, k, o.RandomSeed))).ToList();
        var baseline = new RemovalMetrics[o.TrainSeeds.Length];
        var per = sets.Select(_ => new RemovalMetrics[o.TrainSeeds.Length]).ToList();
        // Seed by seed (the baseline, then every setting): an interrupted experiment leaves whole seeds in its log.
        for (int s = 0; s < o.TrainSeeds.Length; s++)
        {
            baseline[s] = TrainOne(model, training, train, Array.Empty<int>(), queries, test, o.TrainSeeds[s], "baseline", log);
            for (int j = 0; j < sets.Count; j++)
                per[j][s] = TrainOne(model, training, train, sets[j].Removed, queries, test, o.TrainSeeds[s], $"{sets[j].Kind} k={sets[j].K}", log);
        }
        var settings = new List<RemovalSetting>();
        for (int j = 0; j < sets.Count; j++)
        {
            var p = per[j];
            MeanStd Change(Func<RemovalMetrics, double> f) => MeanStd.Of(p.Select((m, s) => f(m) - f(baseline[s])).ToArray());
            settings.Add(new RemovalSetting(sets[j].Kind, sets[j].K, sets[j].Removed, p,
                Change(m => m.QueryLoss), Change(m => m.QueryAccuracy), Change(m => m.TestAccuracy)));
        }
        return new RemovalResult(o.TrainSeeds, baseline, settings);
    }

    private static RemovalMetrics TrainOne(ModelSpec model, TrainOptions training, LabeledDataset train, int[] removed,
        LabeledDataset queries, LabeledDataset test, int seed, string label, Action<string>? log)
    {
        var drop = new HashSet<int>(removed);
        var data = removed.Length == 0 ? train : train.Subset(Enumerable.Range(0, train.Count).Where(i => !drop.Contains(i)).ToArray());
        var sw = Stopwatch.StartNew();
        var trainer = new Trainer(training with { Seed = seed });
        using var m = trainer.Train(model, data, null, null).Model;
        // The queries and test images go through the frozen layers' cache too when they are images of its store.
        var q = Measurements.Of(m, queries, prefix: trainer.LastPrefix);
        var t = Measurements.Of(m, test, prefix: trainer.LastPrefix);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"removal {label} seed {seed}: query loss {q.MeanLoss:F6} acc {q.Accuracy:P2}, test acc {t.Accuracy:P2} ({sw.Elapsed.TotalSeconds:F1}s)"));
        return new RemovalMetrics(q.MeanLoss, q.Accuracy, t.Accuracy);
    }
}
