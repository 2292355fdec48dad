using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Scores;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Runs;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence evaluate lds` and `influence evaluate remove`: do the scores mean anything?</summary>
public static class EvaluateCommands
{
    public static Command Command()
    {
        var cmd = new Command("evaluate", "do the scores mean anything? linear datamodeling score and counterfactual removal, by retraining");
        cmd.Add(LdsCommand());
        cmd.Add(RemoveCommand());
        return cmd;
    }

    static Command LdsCommand()
    {
        var run = Opt.Run();
        var methods = Opt.Methods(MethodFactory.Defaults(MethodRole.Attribution), MethodFactory.Names, single: false);
        var subsets = Opt.Int("--subsets", "random training subsets at alpha", 100, 2, 1000000);
        var alpha = Opt.Double("--alpha", "fraction of the training set in each subset", 0.5, 0, minOpen: true, max: 1, maxOpen: true, helpName: "A");
        var seedsPerSubset = Opt.Int("--seeds-per-subset", "models per subset; targets are their mean", 1, 1, 1000, helpName: "S");
        var ldsSeed = Opt.Int("--lds-seed", "seed of the random subset masks", 0, 0);
        var queryCount = Opt.Int("--query-count", "the first N test examples are the queries", 500, 1);
        var queryOffset = Opt.Int("--query-offset", "the queries start at test example K (K..K+N-1, with N from --query-count), e.g. to report on queries not used to choose a setting", 0, 0, helpName: "K");
        var target = Opt.OptionalChoice("--target", "LDS target (and the methods' query measurement) [default: margin; for a run trained on text, loss: the summed log-probability of each query's scored tokens]", "margin", "loss");
        var prompts = Opt.Str("--prompts", "for a run trained on text: queries from a file of lines 'prompt<TAB>completion' instead of the test sequences; each is measured by log p(completion | prompt)", "FILE");
        var epochs = Opt.OptionalInt("--epochs", "epochs of each retraining [default: the run's]", 1, 100000);
        var outDir = Opt.Str("--out", "retrained-model cache and lds-results.json, reused across methods [default: RUN_DIR/lds]", "DIR", aliases: "--cache");
        var shard = Opt.Shard("retrain only subsets j with j % n == i, then stop");
        var retrain = Opt.Choice("--retrain", "how a subset is retrained: seeds (on the subset alone, a seed per subset and replicate) or same-order (the run replayed with its own seed, initial weights and batches, the removed examples weighted 0; one model per subset) [default out: RUN_DIR/lds or RUN_DIR/lds-same-order]", "seeds", "seeds", "same-order");
        var ms = new MethodSettingOptions(measure: false);
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("lds", "linear datamodeling score: retrain on random alpha-subsets (cached, resumable, shardable), Spearman per query, mean ± standard error")
        {
            run, methods, subsets, alpha, seedsPerSubset, ldsSeed, queryCount, queryOffset, target, prompts, epochs, outDir, shard, retrain,
        };
        CommandSupport.AddRunMethodAction(cmd, run, methods, ms, data, compute, (p, runDir, quiet) =>
        {
            bool sameOrder = p.GetValue(retrain) == "same-order";
            var options = new LdsOptions
            {
                Subsets = p.GetValue(subsets), Alpha = p.GetValue(alpha), SeedsPerSubset = p.GetValue(seedsPerSubset), Seed = p.GetValue(ldsSeed),
                Retrain = sameOrder ? LdsRetrain.SameOrder : LdsRetrain.Seeds, QueryOffset = p.GetValue(queryOffset),
            };
            string cache = p.GetValue(outDir) ?? Path.Combine(runDir, sameOrder ? "lds-same-order" : "lds");
            var profiler = new Profiler();
            var rc = profiler.Time("Load Data", () => RunContext.Load(runDir, p.GetValue(data)));
            bool text = RunTask.IsText(rc);
            string t = p.GetValue(target) ?? (text ? "loss" : "margin");
            if (text && t == "margin")
                throw new UsageException("--target margin: a run trained on text has no margin; its LDS target is loss (the summed log-probability of each query's scored tokens)");
            string? promptFile = p.GetValue(prompts);
            if (promptFile is not null && !text)
                throw new UsageException($"--prompts {promptFile}: prompt/completion queries need a run trained on text (--data text:...)");
            var settings = ms.Read(p) with { Measure = t == "margin" ? QueryMeasurement.Margin : QueryMeasurement.Loss };
            var queries = LdsQueries(rc, p.GetValue(queryCount), promptFile, p.GetValue(queryOffset));
            OutputDirectory.Create(cache);
            RunLds(rc, p.GetValue(methods)!, settings, options, queries, t, p.GetValue(epochs), cache, p.GetValue(shard), profiler, quiet);
            if (!quiet) Console.Error.Write(profiler.Table());
            AtomicFile.WriteAllText(Path.Combine(cache, "profile-lds.txt"), profiler.Table());
            return 0;
        });
        return cmd;
    }

    /// <summary>The LDS queries: <paramref name="nq"/> test examples from <paramref name="offset"/> on (for a
    /// text run, test sequences measured by their summed token log-probability), or <paramref name="nq"/>
    /// prompt/completion pairs of <paramref name="promptFile"/> from that offset, tokenised like the run's
    /// training text. At offset 0 fewer than <paramref name="nq"/> available means all of them; past 0 the
    /// queries must fit, so that a query set is never quietly shorter than asked for.</summary>
    internal static LabeledDataset LdsQueries(Run run, int nq, string? promptFile, int offset = 0)
    {
        if (promptFile is null)
        {
            RequireQueriesFit(offset, nq, run.Data.Test.Count, "the test set has");
            return run.Data.Test.Subset(Enumerable.Range(offset, Math.Min(nq, run.Data.Test.Count - offset)).ToArray(), "lds-queries");
        }
        var train = (TextDataset)run.Data.Train;
        var pairs = PromptCompletionFile.Read(promptFile);
        RequireQueriesFit(offset, nq, pairs.Count, $"--prompts {promptFile} has");
        try { return TextDataset.PromptCompletions(train.Tokenizer, train.SequenceLength, pairs.Skip(offset).Take(nq).ToList(), "lds-queries"); }
        catch (InfluenceSharpException e) { throw new InfluenceSharpException($"--prompts {promptFile}: {e.Message}", e); }
    }

    static void RequireQueriesFit(int offset, int nq, int available, string source)
    {
        if (offset > 0 && (long)offset + nq > available)
            throw new UsageException($"--query-offset {offset} --query-count {nq}: {source} {available} queries, so the last query ({(long)offset + nq - 1}) is past its end");
    }

    internal static Dictionary<string, LdsResult>? RunLds(Run run, IReadOnlyList<string> methods, MethodSettings settings, LdsOptions options,
        LabeledDataset queries, string target, int? epochs, string cache, Shard shard, Profiler profiler, bool quiet = false)
    {
        // Earlier results are read first: a corrupt lds-results.json fails now, not after the retraining.
        string resultsPath = Path.Combine(cache, "lds-results.json");
        var rows = File.Exists(resultsPath) ? Json.ReadFile<List<LdsRow>>(resultsPath) : new List<LdsRow>();
        var training = run.Last.Info.Training ?? new TrainOptions();
        if (epochs is { } e) training = training with { Epochs = e };
        // A run trained to convergence (train --lbfgs-tol) is retrained the same way, warm-started from
        // its own optimum: the objective is strictly convex for logreg, so the subset's optimum does
        // not depend on the start, and the start only saves iterations.
        if (training.LbfgsTolerance is not null && training.InitFile is null)
            training = training with { InitFile = Path.GetFullPath(run.Last.WeightsPath), InitHash = Checkpoint.HashFile(run.Last.WeightsPath) };
        var lds = new LdsRun(cache, run.Last.Info.Model, training, run.Data.Train, queries, options);
        using (profiler.Stage("Retrain Subsets"))
            lds.Run(shard, quiet ? null : msg => Console.Error.WriteLine(msg));
        if (lds.Pending().Length > 0)
        {
            Console.WriteLine($"shard {shard} done; {lds.Pending().Length} subsets still to train by other shards");
            return null;
        }
        if (run.Data.Train is TextDataset text)
        {
            var tokens = LdsSubsets.ScoredTokens(text, lds.Masks).Select(t => (double)t).ToArray();
            var (mean, se) = Statistics.MeanStandardError(tokens);
            double sd = se * Math.Sqrt(tokens.Length);
            Console.WriteLine($"the subsets hold {mean:F0} ± {sd:F0} scored tokens (standard deviation {100 * sd / mean:F1} %); the training loss averages over tokens, so this spread changes how much each sequence weighs, which the additive LDS prediction does not model");
        }
        var evaluation = new LdsEvaluation(lds, target == "margin" ? QueryMeasurement.Margin : QueryMeasurement.Loss);
        int queryBlock = QueryBlocks.Auto(QueryBlocks.ParameterCount(run.Last));
        if (!quiet && QueryBlocks.Describe(queries.Count, queryBlock) is { } blocks) Console.Error.WriteLine(blocks);
        foreach (var m in methods)
        {
            var method = MethodFactory.Create(m, run, settings, profiler, quiet);
            Tensor scores;
            using (profiler.Stage($"Scores ({m})")) scores = method.PairwiseMatrix(queries, run.Data.Train, queryBlock);
            string name = MethodFactory.ResultLabel(m, settings, method);
            MethodLifetime.Release(method);
            evaluation.Add(name, scores);
            scores.Dispose();
        }
        var results = evaluation.Results;
        string measured = RunTask.IsText(run) ? "loss (summed log-probability of the scored tokens)" : target;
        string which = options.QueryOffset > 0 ? $" ({options.QueryOffset}..{options.QueryOffset + queries.Count - 1})" : "";
        Console.WriteLine($"LDS ({options.Subsets} subsets at alpha {options.Alpha}, {queries.Count} queries{which}, target {measured}, {run.Data.Train.Count} training {(RunTask.IsText(run) ? "sequences" : "examples")}" +
            (options.Retrain == LdsRetrain.SameOrder ? ", same-order retraining" : "") + "):");
        foreach (var (m, r) in results)
            Console.WriteLine($"  {m,-26} {r.Mean,7:F4} ± {r.StandardError:F4}" +
                (r.UndefinedQueries > 0 ? $"  ({r.UndefinedQueries} of {queries.Count} queries have an undefined correlation, counted as 0)" : ""));
        // Results accumulate across invocations (one row per method and target).
        rows.RemoveAll(r => results.ContainsKey(r.Method) && r.Target == target);
        rows.AddRange(results.Select(kv => new LdsRow(kv.Key, kv.Value.Mean, kv.Value.StandardError, kv.Value.Subsets, queries.Count, target,
            options.Alpha, run.Data.Train.Count, kv.Value.UndefinedQueries)
        {
            Retrain = options.Retrain == LdsRetrain.SameOrder ? "same-order" : "seeds", PerQuery = kv.Value.PerQuery,
            QueryOffset = options.QueryOffset == 0 ? null : options.QueryOffset,
        }));
        Json.WriteFile(resultsPath, rows);
        return results;
    }

    public sealed record LdsRow(string Method, double Lds, double StandardError, int Subsets, int Queries, string Target, double Alpha,
        int TrainCount, int UndefinedQueries)
    {
        /// <summary>The retraining protocol: seeds or same-order (null in results written before it was recorded).</summary>
        public string? Retrain { get; init; }
        /// <summary>Each query's Spearman correlation, in query order (NaN where undefined; null in results written before it was
        /// recorded): for paired differences between methods and for splitting the queries (e.g. choosing a
        /// damping on some queries and reporting the others).</summary>
        public double[]? PerQuery { get; init; }
        /// <summary>Index of the first query (queries are examples QueryOffset..QueryOffset+Queries−1); absent for 0.</summary>
        public int? QueryOffset { get; init; }
    }

    static Command RemoveCommand()
    {
        var run = Opt.Run();
        var methods = Opt.Methods(MethodFactory.Defaults(MethodRole.Attribution).Split(',')[0], MethodFactory.Names, single: true, "the method whose scores choose what to remove");
        var counts = Opt.IntList("--remove-counts", "how many training examples to remove (each size is one setting)", new[] { 50, 100, 200 }, 1, aliases: "--k");
        var seeds = Opt.IntList("--seeds", "retraining seeds", new[] { 0, 1, 2 }, 0, distinct: true);
        var budget = RetrainBudgetOption.Create("epochs");
        var queryCount = Opt.Int("--query-count", "the first N test examples are the query set", 100, 1);
        var epochs = Opt.OptionalInt("--epochs", "epochs of each retraining [default: the run's]", 1, 100000);
        var outDir = Opt.Out("removal.json, removal.png and removed.csv (what each setting removed, with sources) [default: RUN_DIR/remove]");
        var ms = new MethodSettingOptions();
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("remove", "remove the k most helpful, the k most harmful and k random training examples for a query set, retrain over seeds, " +
            "report the change in the queries' loss and accuracy and in test accuracy")
        {
            run, methods, counts, seeds, budget, queryCount, epochs, outDir,
        };
        CommandSupport.AddRunMethodAction(cmd, run, methods, ms, data, compute, (p, runDir, quiet) =>
        {
            string dir = p.GetValue(outDir) ?? Path.Combine(runDir, "remove");
            var profiler = new Profiler();
            var rc = profiler.Time("Load Data", () => RunContext.Load(runDir, p.GetValue(data)));
            RequireRemovable(p.GetValue(counts)!, rc.Data.Train.Count);
            RunRemoval(rc, p.GetValue(methods)![0], ms.Read(p), p.GetValue(counts)!, p.GetValue(seeds)!, p.GetValue(queryCount), p.GetValue(epochs), dir, profiler, quiet,
                RetrainBudgets.Parse(p.GetValue(budget)!));
            if (!quiet) Console.Error.Write(profiler.Table());
            AtomicFile.WriteAllText(Path.Combine(dir, "profile-remove.txt"), profiler.Table());
            return 0;
        });
        return cmd;
    }

    /// <summary>Every removal count must leave training data: refused before any scoring or retraining.</summary>
    static void RequireRemovable(int[] ks, int trainCount)
    {
        foreach (var k in ks)
            if (k >= trainCount)
                throw new UsageException($"--remove-counts {string.Join(",", ks)}: {k} must be less than the run's {trainCount} training examples");
    }

    internal static RemovalResult RunRemoval(Run run, string methodName, MethodSettings settings, int[] ks, int[] seeds, int nq,
        int? epochs, string outDir, Profiler profiler, bool quiet = false, RetrainBudget budget = RetrainBudget.Epochs)
    {
        var training = run.Last.Info.Training ?? new TrainOptions();
        if (epochs is { } e) training = training with { Epochs = e };
        var queries = run.Data.Test.Subset(Enumerable.Range(0, Math.Min(nq, run.Data.Test.Count)).ToArray(), "removal-queries");
        var method = MethodFactory.Create(methodName, run, settings, profiler, quiet);
        Tensor scores;
        using (profiler.Stage("Scores")) scores = method.PairwiseMatrix(queries, run.Data.Train, QueryBlocks.Auto(QueryBlocks.ParameterCount(run.Last)));
        RemovalResult result;
        using (profiler.Stage("Retrain Without Removed"))
            result = Removal.Run(scores, run.Last.Info.Model, training, run.Data.Train, queries, run.Data.Test,
                new RemovalOptions { Ks = ks, TrainSeeds = seeds, Budget = budget }, quiet ? null : msg => Console.Error.WriteLine(msg));
        OutputDirectory.Create(outDir);
        Console.WriteLine($"counterfactual removal ({methodName}, {queries.Count} queries, seeds {string.Join(",", seeds)}): change vs full-data training");
        Console.WriteLine($"{"removed",-9} {"k",5} {"query loss",18} {"query acc",18} {"test acc",18}");
        foreach (var s in result.Settings)
            Console.WriteLine($"{s.Kind,-9} {s.K,5} {s.QueryLossChange,18} {s.QueryAccuracyChange,18} {s.TestAccuracyChange,18}");
        Json.WriteFile(Path.Combine(outDir, "removal.json"), new
        {
            method = methodName, queries = queries.Count, seeds, retrain_budget = RetrainBudgets.Name(budget),
            baseline = result.Baseline,
            settings = result.Settings.Select(s => new
            {
                kind = s.Kind.ToString().ToLowerInvariant(), k = s.K,
                query_loss_change = s.QueryLossChange, query_accuracy_change = s.QueryAccuracyChange, test_accuracy_change = s.TestAccuracyChange,
                per_seed = s.PerSeed,
            }).ToList(),
        });
        // What each setting removed, in removal order, with where each example came from.
        var summed = Removal.SummedScores(scores);
        var train = run.Data.Train;
        var removedCsv = new System.Text.StringBuilder("kind,k,rank,index,summed_score,label,source\n");
        foreach (var s in result.Settings)
            for (int r = 0; r < s.Removed.Length; r++)
            {
                int i = s.Removed[r];
                removedCsv.Append(System.Globalization.CultureInfo.InvariantCulture,
                    $"{s.Kind.ToString().ToLowerInvariant()},{s.K},{r + 1},{i},{summed[i]:R},{SourceText.Csv(run.ClassNames[train.Labels[i]])},{SourceText.Csv(SourceText.Of(train, i))}\n");
            }
        AtomicFile.WriteAllText(Path.Combine(outDir, "removed.csv"), removedCsv.ToString());
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
