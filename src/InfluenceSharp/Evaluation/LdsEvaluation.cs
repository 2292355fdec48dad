using InfluenceSharp.Methods;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>
/// The LDS of several methods against one finished <see cref="LdsRun"/>, with the noise ceiling.
/// Results are kept in order: with several seeds per subset, first the ceilings (one seed's retrained
/// models predicting another seed's on the same subsets, and, with three or more seeds, one seed
/// predicting the mean of the others), the estimated ceiling of a deterministic method against the
/// averaged targets (split-half, see <see cref="SplitHalfCeiling"/>), then per method its
/// LDS against the targets (the mean over each subset's seeds) and, with several seeds, against the
/// first seed's models alone (the one-seed protocol, from the same retrainings).
/// </summary>
public sealed class LdsEvaluation
{
    readonly bool[][] masks;
    readonly double[,] targets;
    readonly double[,]? firstSeed;

    /// <summary>Reads the run's targets (it must be complete) for <paramref name="target"/>: the
    /// queries' margins, or their negative losses (for token sequences, the summed log-probability
    /// of the scored tokens).</summary>
    public LdsEvaluation(LdsRun run, QueryMeasurement target)
    {
        double[,] Pick(LdsTargets x) => target == QueryMeasurement.Margin ? x.Margins : x.NegativeLosses();
        var all = run.LoadTargets();
        if (target == QueryMeasurement.Margin && all.Margins.Cast<double>().Any(double.IsNaN))
            throw new InfluenceSharpException($"{run.CacheDir}: the queries have no margin (token sequences); use the loss target (the summed log-probability of their scored tokens)");
        masks = all.Masks;
        targets = Pick(all);
        int r = run.Options.SeedsPerSubset;
        if (r < 2) return;
        firstSeed = Pick(run.LoadTargets(0));
        Results["ceiling (seed 0 vs 1)"] = Lds.Agreement(firstSeed, Pick(run.LoadTargets(1)));
        if (r > 2)
        {
            int m = targets.GetLength(0), q = targets.GetLength(1);
            var others = new double[m, q];
            for (int k = 1; k < r; k++) { var tk = Pick(run.LoadTargets(k)); for (int j = 0; j < m; j++) for (int i = 0; i < q; i++) others[j, i] += tk[j, i] / (r - 1); }
            Results[$"ceiling (seed 0 vs mean of {r - 1})"] = Lds.Agreement(firstSeed, others);
        }
        Results[$"ceiling ({r}-seed targets, split-half estimate)"] = SplitHalfCeiling(run, Pick);
    }

    /// <summary>What a deterministic method can reach against the mean of all r seeds: per query, ρ =
    /// the agreement of the mean of seeds [0, h) with the mean of seeds [h, 2h) (h = r/2), stepped up
    /// to r seeds by Spearman-Brown (k = r/h, reliability kρ/(1 + (k − 1)ρ)), square-rooted: the
    /// correlation of the noisy targets with their own expectation. The rows above are what one
    /// noisy retraining predicts, which a method without seed noise can exceed.</summary>
    static LdsResult SplitHalfCeiling(LdsRun run, Func<LdsTargets, double[,]> pick)
    {
        int r = run.Options.SeedsPerSubset, h = r / 2;
        var reps = Enumerable.Range(0, 2 * h).Select(k => pick(run.LoadTargets(k))).ToArray();
        int m = reps[0].GetLength(0), q = reps[0].GetLength(1);
        var a = new double[m, q];
        var b = new double[m, q];
        for (int k = 0; k < h; k++)
            for (int j = 0; j < m; j++)
                for (int i = 0; i < q; i++) { a[j, i] += reps[k][j, i] / h; b[j, i] += reps[h + k][j, i] / h; }
        var half = Lds.Agreement(a, b);
        double steps = (double)r / h;
        var perQuery = half.PerQuery.Select(rho => double.IsNaN(rho) ? double.NaN
            : Math.Sqrt(Math.Max(0, steps * rho / (1 + (steps - 1) * rho)))).ToArray();
        var (mean, se) = Statistics.MeanStandardError(perQuery.Select(v => double.IsNaN(v) ? 0 : v).ToArray(), single: double.NaN);
        return new LdsResult(mean, se, perQuery, half.Subsets, perQuery.Count(double.IsNaN));
    }

    /// <summary>Every result so far, ceilings first, by row name.</summary>
    public Dictionary<string, LdsResult> Results { get; } = new();

    /// <summary>Scores one method's [n_query, n_train] score matrix under <paramref name="name"/>.</summary>
    public void Add(string name, Tensor scores)
    {
        Results[name] = Lds.Score(scores, masks, targets);
        if (firstSeed is not null) Results[$"{name} (seed-0 targets)"] = Lds.Score(scores, masks, firstSeed);
    }
}
