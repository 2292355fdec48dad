using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Scores;
using InfluenceSharp.Training;
using static InfluenceSharp.Cli.Commands.CommandSupport;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence fit-factors` and `influence scores pairwise|self` (influence functions).</summary>
public static class InfluenceCommands
{
    public static Command FitFactorsCommand()
    {
        var run = Opt.Run();
        var checkpoint = CheckpointOption();
        var outDir = Opt.Out("factors directory (manifest.json, partials/ while incomplete)", required: true);
        var strategy = Opt.Choice("--strategy", "Hessian approximation", StrategyName(FactorStrategy.Ekfac), Enum.GetValues<FactorStrategy>().Select(StrategyName).ToArray());
        var fisher = Opt.Choice("--fisher", "true (labels sampled from the model) or empirical (the true labels)", "true", "true", "empirical");
        var layers = Opt.Str("--layers", "track only layers whose names contain one of these (comma separated) [default: all Linear/Conv2d]", "NAMES");
        var batchSize = Opt.Int("--batch-size", "training examples per batch", 256, 1);
        var partition = Opt.Int("--partition-size", "examples per saved partition", 10000, 1);
        var seed = Opt.Int("--seed", "seeds the sampled labels", 0, 0);
        var shard = Opt.Shard();
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("fit-factors", $"fit influence-function factors ({string.Join(", ", Enum.GetValues<FactorStrategy>().Select(StrategyName))}) of one checkpoint. An interrupted fit resumes " +
            "from its saved partitions; later commands refuse factors fit on another checkpoint, architecture or data.")
        {
            run, checkpoint, outDir, strategy, fisher, layers, batchSize, partition, seed, shard, data,
        };
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            var ckpt = ResolveCheckpoint(p.GetValue(run)!, p.GetValue(checkpoint));
            var options = new FactorOptions
            {
                Strategy = ParseStrategy(p.GetValue(strategy)!),
                Fisher = p.GetValue(fisher) == "empirical" ? FisherType.Empirical : FisherType.True,
                Layers = p.GetValue(layers), TrainBatchSize = p.GetValue(batchSize), PartitionSize = p.GetValue(partition), Seed = p.GetValue(seed), Progress = quiet ? null : new ConsoleProgress(),
            };
            return FitFactors(ckpt, p.GetValue(outDir)!, options, p.GetValue(shard), p.GetValue(data), quiet);
        });
        return cmd;
    }

    static Option<string> CheckpointOption() =>
        Opt.Str("--checkpoint", "a checkpoint file of the run (a path, or a file name in RUN_DIR) [default: the run's last]", "FILE");

    static int FitFactors(Checkpoint ckpt, string outDir, FactorOptions options, Shard shard, string? dataSpec, bool quiet)
    {
        var profiler = new Profiler();
        var data = profiler.Time("Load Data", () => RunData.For(ckpt, dataSpec));
        var model = profiler.Time("Load Model", ckpt.LoadModel);
        if (!quiet) Console.Error.WriteLine($"fitting {options.Strategy} factors of {ckpt.WeightsPath} ({ckpt.Info.Model.Describe()}) on {data.Train.Count} training examples");
        var fitter = new FactorFitter(model, new ClassificationTask(), options, profiler);
        if (!quiet) Console.Error.WriteLine($"tracked layers: {string.Join(", ", fitter.Layers)}");
        var factors = fitter.Fit(data.Train, outDir, shard);
        PrintProfile(profiler, quiet);
        if (factors is null)
        {
            Console.WriteLine($"shard {shard} finished its partitions; other shards' partitions are still missing. Run fit-factors again (without --shard) when they are done.");
            return 0;
        }
        var dampings = factors.Layers.Select(l => $"{l.Name} {l.HeuristicDamping():G3}");
        Console.WriteLine($"factors written to {outDir} (heuristic damping per layer: {string.Join(", ", dampings)})");
        return 0;
    }

    /// <summary>A strategy as --strategy names it (the factored method of that name).</summary>
    static string StrategyName(FactorStrategy s) => s.ToString().ToLowerInvariant();

    public static FactorStrategy ParseStrategy(string s) =>
        Enum.GetValues<FactorStrategy>().FirstOrDefault(x => StrategyName(x) == s) is var f && StrategyName(f) == s
            ? f : throw new ArgumentException($"unknown strategy '{s}'", nameof(s));

    public static Command ScoresCommand()
    {
        var cmd = new Command("scores", "score matrices on disk, resumable and shardable: pairwise (queries x training examples) or self-influence");
        cmd.Add(ScoresSubcommand("pairwise"));
        cmd.Add(ScoresSubcommand("self"));
        return cmd;
    }

    static Command ScoresSubcommand(string kind)
    {
        bool pairwise = kind == "pairwise";
        var run = Opt.Run();
        var checkpoint = CheckpointOption();
        var factors = Opt.Str("--factors", "influence functions from fitted factors (fit-factors --out); the factors' checkpoint must be --checkpoint's", "DIR");
        var methods = Opt.Methods(null, MethodFactory.Names, single: true,
            "instead of --factors: a method computed from the run (feature methods use RUN_DIR/store, see build-store)");
        var outDir = Opt.Out(pairwise ? "scores.npy [n_query, n_train] (row = query, positive = helpful), manifest.json, query_indices.json"
            : "self_influence.npy [n_train], manifest.json", required: true);
        var queries = new QueryOptions(100);
        var ms = new MethodSettingOptions();
        var queryRank = Opt.Int("--query-rank", "with --factors: rank-R approximation of preconditioned query gradients (0 = exact)", 0, 0, helpName: "R");
        var bf16 = Opt.Flag("--bf16", "with --factors: score products in bfloat16; prints the Spearman correlation with float32");
        var perLayer = Opt.Flag("--per-layer", "with --factors: also write one score matrix per tracked layer");
        var partition = Opt.Int("--partition-size", "training examples per saved partition", 10000, 1);
        var queryBlock = Opt.OptionalInt("--query-block", "queries scored per pass over the training set: fewer hold less memory, more pass over the training data fewer times "
            + $"[default: as many as fit {QueryBlocks.BudgetText} at two float64 vectors of the model's parameters per query]", 1);
        var shard = Opt.Shard();
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command(kind, pairwise
            ? "influence of every training example on each query -> scores.npy"
            : "self-influence of every training example -> self_influence.npy")
        {
            run, checkpoint, factors, methods, outDir,
        };
        if (pairwise) queries.AddTo(cmd);
        ms.AddTo(cmd);
        ms.RefuseUnused(cmd, methods);
        if (pairwise) { cmd.Add(queryRank); cmd.Add(bf16); cmd.Add(perLayer); cmd.Add(queryBlock); }
        cmd.Add(partition); cmd.Add(shard); cmd.Add(data);
        compute.AddTo(cmd);
        Option[] factorsOnly = pairwise ? new Option[] { checkpoint, queryRank, bf16, perLayer } : new Option[] { checkpoint };
        Option[] methodsOnly = { ms.Layers, ms.Seed, ms.Ensemble, ms.Members, ms.MemberEpochs, ms.IfEpochs!, ms.Fisher!, ms.ProjDim, ms.ProjLayout };
        cmd.Validators.Add(r =>
        {
            bool Given(Option o) => r.GetResult(o) is { Implicit: false };
            if (Given(factors) == Given(methods)) { r.AddError("give --factors DIR (fitted influence-function factors) or --methods M, one of them"); return; }
            foreach (var o in Given(factors) ? methodsOnly : factorsOnly)
                if (Given(o)) r.AddError($"{o.Name}: only with {(Given(factors) ? "--methods" : "--factors")}");
            // A feature method scores against its whole-training-set store (one partition); --shard
            // splits the store's build instead.
            if (Given(methods) && Given(partition) && Opt.ValueIfValid(r, methods) is { Length: 1 } m && FeatureCommands.FeatureMethodNames.Contains(m[0]))
                r.AddError($"--partition-size: not with --methods {m[0]} (it scores against its whole training-set store in RUN_DIR/store; --shard i/n splits the store's blocks)");
        });
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            var settings = ms.Read(p);
            var (set, idx, count) = queries.Read(p);
            if (p.GetResult(methods) is { Implicit: false })
                return FeatureCommands.Scores(kind, p.GetValue(run)!, p.GetValue(methods)![0], p.GetValue(outDir)!, settings, p.GetValue(partition),
                    p.GetValue(shard), p.GetValue(data), set, idx, count, quiet, pairwise ? p.GetValue(queryBlock) : null);
            var ckpt = ResolveCheckpoint(p.GetValue(run)!, p.GetValue(checkpoint));
            var options = new ScoreOptions
            {
                // The same default as every factored method built by name (a converged run: its L2).
                Damping = DampingDefaults.Factored(settings.Damping, ckpt), QueryRank = p.GetValue(queryRank), BFloat16 = p.GetValue(bf16), TrainBatchSize = settings.TrainBatchSize, Progress = quiet ? null : new ConsoleProgress(),
            };
            return Scores(kind, ckpt, p.GetValue(factors)!, p.GetValue(outDir)!, options, settings.Measure, p.GetValue(perLayer), p.GetValue(partition),
                p.GetValue(shard), p.GetValue(data), set, idx, count, quiet, pairwise ? p.GetValue(queryBlock) : null);
        });
        return cmd;
    }

    static int Scores(string kind, Checkpoint ckpt, string factorsDir, string outDir, ScoreOptions options, QueryMeasurement measure, bool perLayer,
        int partition, Shard shard, string? dataSpec, string querySet, int[]? queryIndices, int? queryCount, bool quiet, int? queryBlock)
    {
        string dampingText = options.Damping is { } dv ? dv.ToString(System.Globalization.CultureInfo.InvariantCulture) : "heuristic";
        var task = new ClassificationTask(measure);
        var profiler = new Profiler();
        var data = profiler.Time("Load Data", () => RunData.For(ckpt, dataSpec));
        var queries = kind == "pairwise" ? Queries(data, querySet, queryIndices, queryCount) : default;

        var model = profiler.Time("Load Model", ckpt.LoadModel);
        ReadLocks.Factors(factorsDir);
        using var factors = profiler.Time("Load All Factors", () => Factors.Load(factorsDir));
        if (factors.Manifest.DataFingerprint != data.Train.Fingerprint())
            throw new InfluenceSharpException($"{factorsDir}/manifest.json: factors were fit on training data {factors.Manifest.DataFingerprint}, but the checkpoint's training data is {data.Train.Fingerprint()} (factors from other data)");
        var method = new InfluenceFunction(model, task, factors, options, profiler);
        var settings = new Dictionary<string, string>
        {
            ["strategy"] = factors.Strategy.ToString(), ["damping"] = dampingText, ["measure"] = task.Query.ToString(),
            ["query_rank"] = options.QueryRank.ToString(), ["bf16"] = options.BFloat16.ToString(), ["factors_model"] = factors.Manifest.ModelFingerprint,
        };
        int block = kind != "pairwise" ? 0 : queryBlock ?? QueryBlocks.Auto(QueryBlocks.ParameterCount(model));
        var manifest = ScoresManifest.For(kind, method.Name, settings, ModelFingerprint.Of(model), data.Train, partition, kind == "pairwise" ? queries : null, block);
        if (!quiet && kind == "pairwise" && QueryBlocks.Describe(queries.Queries.Count, block) is { } blocks) Console.Error.WriteLine(blocks);
        if (!quiet) Console.Error.WriteLine($"{method.Name} {kind} scores; damping per layer: {string.Join(", ", method.Layers.Zip(method.Dampings()).Select(x => $"{x.First.Name} {x.Second:G3}"))}");
        bool done;
        if (kind == "self")
        {
            var self = PartitionedScoring.Self(method, data.Train, outDir, manifest, shard, profiler);
            done = self is not null;
            if (self is not null)
            {
                var top = Enumerable.Range(0, self.Length).OrderByDescending(i => self[i]).Take(10).ToArray();
                Console.WriteLine("most self-influential training examples: " + string.Join(", ", top.Select(i => $"#{i} ({self[i]:G4})")));
            }
        }
        else
        {
            var names = new List<string> { "scores" };
            PartitionedScoring.BlockProducer produce = PartitionedScoring.Totals(method);
            if (perLayer)
            {
                names.AddRange(method.Layers.Select(l => "scores-" + l.Name));
                produce = (queryBlock, train, sink) => method.PairwiseByLayer(queryBlock, train, (off, blocks) =>
                {
                    var total = blocks[0];
                    for (int i = 1; i < blocks.Length; i++) total = total + blocks[i];
                    sink(off, blocks.Prepend(total).ToArray());
                });
            }
            done = PartitionedScoring.Pairwise(produce, names.ToArray(), queries.Queries, data.Train, outDir, manifest, shard, profiler);
            Json.WriteFile(Path.Combine(outDir, "query_indices.json"), new { set = queries.Set, indices = queries.Indices });
            if (done && options.BFloat16) CompareWithFloat32(model, task, factors, options, queries.Queries, data.Train, outDir, profiler);
        }
        PrintProfile(profiler, quiet);
        Console.WriteLine(done ? $"scores written to {outDir}" : $"shard {shard} done; run again without --shard to merge when all shards have finished");
        return 0;
    }

    /// <summary>The half-precision check: Spearman between bf16 and fp32 scores on (up to)
    /// the first 2,000 training examples.</summary>
    static void CompareWithFloat32(TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model, IAttributionTask task, Factors factors,
        ScoreOptions options, Data.LabeledDataset queries, Data.LabeledDataset train, string outDir, Profiler profiler)
    {
        using var bf = Npy.Read(Path.Combine(outDir, PartitionedScoring.PairwiseFile));
        var (rho, n) = Evaluation.HalfPrecisionCheck.Compare(
            new InfluenceFunction(model, task, factors, options with { BFloat16 = false, Progress = null }, profiler), bf, queries, train);
        Console.WriteLine($"bfloat16 vs float32 scores on the first {n} training examples: Spearman {rho:F4}");
    }
}
