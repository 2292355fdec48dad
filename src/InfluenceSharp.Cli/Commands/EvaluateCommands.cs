using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence evaluate lds` and `influence evaluate remove`: do the scores mean anything?</summary>
public static class EvaluateCommands
{
    public const string LdsHelp = """
        influence evaluate lds --run RUN_DIR [options]

          --methods M,...      methods to score (default ekfac)
          --subsets M          random subsets at alpha (default 100)   --alpha A (default 0.5)
          --seeds-per-subset S models per subset; targets are their mean (default 1)
          --query-count N      the first N test examples are the queries (default 500)
          --target margin|loss LDS target (default margin)
          --epochs N           epochs of each retraining (default: the run's)
          --cache DIR          retrained-model cache (default RUN_DIR/lds); reused across methods
          --shard i/n          retrain only subsets j with j % n == i, then stop
        Retraining resumes where it stopped. Writes lds-results.json in the cache directory.
        """;

    public static int Lds(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(LdsHelp); return 0; }
        string runDir = a.Required("run");
        var methods = MethodFactory.ParseList(a.Str("methods", "ekfac"));
        var options = new LdsOptions { Subsets = a.Int("subsets", 100), Alpha = a.Double("alpha", 0.5), SeedsPerSubset = a.Int("seeds-per-subset", 1), Seed = a.Int("lds-seed", 0) };
        int nq = a.Int("query-count", 500);
        string target = a.Str("target", "margin");
        if (target is not ("margin" or "loss")) throw new UsageException($"--target {target}: choose margin or loss");
        int? epochs = a.Has("epochs") ? a.Int("epochs", 1) : null;
        string cache = a.Str("cache") ?? Path.Combine(runDir, "lds");
        var shard = CommandSupport.ShardOf(a);
        var settings = MethodSettings.From(a) with { Measure = target == "margin" ? QueryMeasurement.Margin : QueryMeasurement.Loss };
        string? dataSpec = a.Str("data");
        a.RejectUnknown();

        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        RunLds(run, methods, settings, options, nq, target, epochs, cache, shard, profiler);
        Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(cache, "profile-lds.txt"), profiler.Table());
        return 0;
    }

    internal static Dictionary<string, LdsResult>? RunLds(RunContext run, IReadOnlyList<string> methods, MethodSettings settings, LdsOptions options,
        int nq, string target, int? epochs, string cache, Shard shard, Profiler profiler, bool quiet = false)
    {
        var training = run.Last.Info.Training ?? new TrainOptions();
        if (epochs is { } e) training = training with { Epochs = e };
        var queries = run.Data.Test.Subset(Enumerable.Range(0, Math.Min(nq, run.Data.Test.Count)).ToArray(), "lds-queries");
        var lds = new LdsRun(cache, run.Last.Info.Model, training, run.Data.Train, queries, options);
        using (profiler.Stage("Retrain Subsets"))
            lds.Run(shard, quiet ? null : msg => Console.Error.WriteLine(msg));
        if (lds.Pending().Length > 0)
        {
            Console.WriteLine($"shard {shard} done; {lds.Pending().Length} subsets still to train by other shards");
            return null;
        }
        var targets = lds.LoadTargets();
        var t = target == "margin" ? targets.Margins : targets.NegativeLosses();
        var results = new Dictionary<string, LdsResult>();
        foreach (var m in methods)
        {
            var method = MethodFactory.Create(m, run, settings, profiler, quiet);
            Tensor scores;
            using (profiler.Stage($"Scores ({m})")) scores = method.PairwiseMatrix(queries, run.Data.Train);
            results[m == "trak" ? $"trak-{settings.Ensemble}" : m] = Evaluation.Lds.Score(scores, targets.Masks, t);
            scores.Dispose();
        }
        Console.WriteLine($"LDS ({options.Subsets} subsets at alpha {options.Alpha}, {queries.Count} queries, target {target}, {run.Data.Train.Count} training examples):");
        foreach (var (m, r) in results) Console.WriteLine($"  {m,-14} {r.Mean,7:F4} ± {r.StandardError:F4}");
        // Results accumulate across invocations (one row per method and target).
        string resultsPath = Path.Combine(cache, "lds-results.json");
        var rows = File.Exists(resultsPath) ? Json.ReadFile<List<LdsRow>>(resultsPath) : new List<LdsRow>();
        rows.RemoveAll(r => results.ContainsKey(r.Method) && r.Target == target);
        rows.AddRange(results.Select(kv => new LdsRow(kv.Key, kv.Value.Mean, kv.Value.StandardError, kv.Value.Subsets, queries.Count, target,
            options.Alpha, run.Data.Train.Count, kv.Value.UndefinedQueries)));
        Json.WriteFile(resultsPath, rows);
        return results;
    }

    public sealed record LdsRow(string Method, double Lds, double StandardError, int Subsets, int Queries, string Target, double Alpha,
        int TrainCount, int UndefinedQueries);

    public const string RemoveHelp = """
        influence evaluate remove --run RUN_DIR [options]

          --method M           method whose scores choose what to remove (default ekfac)
          --k 50,100,200,500   removal sizes (default 50,100,200)
          --seeds 0,1,2        retraining seeds (default 0,1,2)
          --query-count N      the first N test examples are the query set (default 100)
          --epochs N           epochs of each retraining (default: the run's)
          --out DIR            (default RUN_DIR/remove)
        Removes the k most helpful, the k most harmful and k random training examples for the query
        set, retrains, and reports the change in the queries' loss and accuracy and in test accuracy.
        """;

    public static int Remove(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(RemoveHelp); return 0; }
        string runDir = a.Required("run");
        string method = MethodFactory.ParseList(a.Str("method", "ekfac")).Single();
        var ks = a.IntList("k", new[] { 50, 100, 200 });
        var seeds = a.IntList("seeds", new[] { 0, 1, 2 });
        int nq = a.Int("query-count", 100);
        int? epochs = a.Has("epochs") ? a.Int("epochs", 1) : null;
        string outDir = a.Str("out") ?? Path.Combine(runDir, "remove");
        var settings = MethodSettings.From(a);
        string? dataSpec = a.Str("data");
        a.RejectUnknown();
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        RunRemoval(run, method, settings, ks, seeds, nq, epochs, outDir, profiler);
        Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, "profile-remove.txt"), profiler.Table());
        return 0;
    }

    internal static RemovalResult RunRemoval(RunContext run, string methodName, MethodSettings settings, int[] ks, int[] seeds, int nq,
        int? epochs, string outDir, Profiler profiler, bool quiet = false)
    {
        var training = run.Last.Info.Training ?? new TrainOptions();
        if (epochs is { } e) training = training with { Epochs = e };
        var queries = run.Data.Test.Subset(Enumerable.Range(0, Math.Min(nq, run.Data.Test.Count)).ToArray(), "removal-queries");
        var method = MethodFactory.Create(methodName, run, settings, profiler, quiet);
        Tensor scores;
        using (profiler.Stage("Scores")) scores = method.PairwiseMatrix(queries, run.Data.Train);
        RemovalResult result;
        using (profiler.Stage("Retrain Without Removed"))
            result = Removal.Run(scores, run.Last.Info.Model, training, run.Data.Train, queries, run.Data.Test,
                new RemovalOptions { Ks = ks, TrainSeeds = seeds }, quiet ? null : msg => Console.Error.WriteLine(msg));
        Directory.CreateDirectory(outDir);
        Console.WriteLine($"counterfactual removal ({methodName}, {queries.Count} queries, seeds {string.Join(",", seeds)}): change vs full-data training");
        Console.WriteLine($"{"removed",-9} {"k",5} {"query loss",18} {"query acc",18} {"test acc",18}");
        foreach (var s in result.Settings)
            Console.WriteLine($"{s.Kind,-9} {s.K,5} {s.QueryLossChange,18} {s.QueryAccuracyChange,18} {s.TestAccuracyChange,18}");
        Json.WriteFile(Path.Combine(outDir, "removal.json"), new
        {
            method = methodName, queries = queries.Count, seeds,
            baseline = result.Baseline,
            settings = result.Settings.Select(s => new
            {
                kind = s.Kind.ToString().ToLowerInvariant(), k = s.K,
                query_loss_change = s.QueryLossChange, query_accuracy_change = s.QueryAccuracyChange, test_accuracy_change = s.TestAccuracyChange,
            }).ToList(),
        });
        var chart = new BarChart(ks.Select(k => $"k={k}")) { Title = $"Query loss change after removal ({methodName})", YLabel = "change in mean query loss" };
        int ci = 0;
        foreach (var kind in new[] { RemovalKind.Helpful, RemovalKind.Harmful, RemovalKind.Random })
        {
            var rows = ks.Select(k => result.Get(kind, k)).ToList();
            chart.Add(kind.ToString().ToLowerInvariant(), rows.Select(r => r.QueryLossChange.Mean).ToList(), rows.Select(r => r.QueryLossChange.Std).ToList(), Rgb.Palette(ci++));
        }
        chart.SavePng(Path.Combine(outDir, "removal.png"));
        scores.Dispose();
        return result;
    }
}
