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
    public const string FitHelp = """
        influence fit-factors --checkpoint RUN_DIR|FILE --out DIR [options]

          --strategy S         identity | diagonal | kfac | ekfac                 (default ekfac)
          --fisher F           true (labels sampled from the model) | empirical   (default true)
          --layers NAMES       track only layers whose names contain one of these (comma separated)
          --batch-size N       (default 256)     --partition-size N   examples per saved partition (default 10000)
          --seed N             seeds the sampled labels (default 0)
          --shard i/n          do only partitions p with p % n == i; run again without --shard to merge
          --data SPEC          where the training data is, if not where the checkpoint says
        An interrupted fit resumes from its saved partitions. Factors are refused by later commands
        when they were fit on another checkpoint, architecture or data.
        """;

    public static int FitFactors(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(FitHelp); return 0; }
        var ckpt = ResolveCheckpoint(a.Required("checkpoint"));
        string outDir = a.Required("out");
        var options = new FactorOptions
        {
            Strategy = ParseStrategy(a.Str("strategy", "ekfac")),
            Fisher = a.Str("fisher", "true") switch
            {
                "true" => FisherType.True, "empirical" => FisherType.Empirical,
                var s => throw new UsageException($"--fisher {s}: choose true or empirical"),
            },
            Layers = a.Str("layers"), BatchSize = a.Int("batch-size", 256), PartitionSize = a.Int("partition-size", 10000), Seed = a.Int("seed", 0),
            Progress = new ConsoleProgress(),
        };
        var shard = ShardOf(a);
        string? dataSpec = a.Str("data");
        a.RejectUnknown();

        var profiler = new Profiler();
        var data = profiler.Time("Load Data", () => RunData.For(ckpt, dataSpec));
        var model = profiler.Time("Load Model", ckpt.LoadModel);
        Console.Error.WriteLine($"fitting {options.Strategy} factors of {ckpt.WeightsPath} ({ckpt.Info.Model.Describe()}) on {data.Train.Count} training examples");
        var fitter = new FactorFitter(model, new ClassificationTask(), options, profiler);
        Console.Error.WriteLine($"tracked layers: {string.Join(", ", fitter.Layers)}");
        var factors = fitter.Fit(data.Train, outDir, shard);
        PrintProfile(profiler);
        if (factors is null)
        {
            Console.WriteLine($"shard {shard} finished its partitions; other shards' partitions are still missing. Run fit-factors again (without --shard) when they are done.");
            return 0;
        }
        var dampings = factors.Layers.Select(l => $"{l.Name} {l.HeuristicDamping():G3}");
        Console.WriteLine($"factors written to {outDir} (heuristic damping per layer: {string.Join(", ", dampings)})");
        return 0;
    }

    public static FactorStrategy ParseStrategy(string s) => s switch
    {
        "identity" => FactorStrategy.Identity, "diagonal" => FactorStrategy.Diagonal,
        "kfac" => FactorStrategy.Kfac, "ekfac" => FactorStrategy.Ekfac,
        _ => throw new UsageException($"--strategy {s}: choose identity, diagonal, kfac or ekfac"),
    };

    public const string ScoresHelp = """
        influence scores pairwise --checkpoint RUN_DIR|FILE --factors DIR --out DIR [options]
        influence scores self     --checkpoint RUN_DIR|FILE --factors DIR --out DIR [options]

          --queries test|train   query set (pairwise; default test)
          --query-count N        the first N queries (default 100)    --query-indices i,j,...
          --measure loss|margin  query measurement (default loss)
          --damping X|heuristic  absolute damping, or 0.1 x mean eigenvalue per layer (default heuristic)
          --query-rank R         rank-R approximation of preconditioned query gradients (default 0 = exact)
          --bf16                 score products in bfloat16; prints the Spearman correlation with float32
          --per-layer            also write one score matrix per tracked layer
          --batch-size N         training batch (default 256)   --partition-size N (default 10000)
          --shard i/n            only partitions p with p % n == i; run again without --shard to merge
        Output: scores.npy [n_query, n_train] (row = query; positive = helpful) or self_influence.npy,
        with manifest.json and query_indices.json.

        influence scores pairwise|self --run RUN_DIR --method M --out DIR [options]
          any other method (tracin, tracin-last, tracin-proj, graddot, gradcos, trak, or an influence-
          function strategy fitted in memory); training features come from RUN_DIR/store (see build-store).
        """;

    public static int Scores(Args a, string kind)
    {
        if (a.Flag("help")) { Console.WriteLine(ScoresHelp); return 0; }
        if (a.Has("method")) return FeatureCommands.Scores(a, kind);
        var ckpt = ResolveCheckpoint(a.Required("checkpoint"));
        string factorsDir = a.Required("factors"), outDir = a.Required("out");
        string? dataSpec = a.Str("data");
        var dampingText = a.Str("damping", "heuristic");
        double? damping = dampingText == "heuristic" ? null
            : double.TryParse(dampingText, System.Globalization.CultureInfo.InvariantCulture, out var d) && d >= 0 ? d
            : throw new UsageException($"--damping {dampingText}: a non-negative number or 'heuristic'");
        var options = new ScoreOptions
        {
            Damping = damping, QueryRank = a.Int("query-rank", 0), BFloat16 = a.Flag("bf16"),
            TrainBatchSize = a.Int("batch-size", 256), Progress = new ConsoleProgress(),
        };
        bool perLayer = a.Flag("per-layer");
        int partition = a.Int("partition-size", 10000);
        var shard = ShardOf(a);
        var task = new ClassificationTask(Measure(a));
        var profiler = new Profiler();
        var data = profiler.Time("Load Data", () => RunData.For(ckpt, dataSpec));
        var queries = kind == "pairwise" ? Queries(a, data) : default;
        a.RejectUnknown();

        var model = profiler.Time("Load Model", ckpt.LoadModel);
        using var factors = profiler.Time("Load All Factors", () => Factors.Load(factorsDir));
        if (factors.Manifest.DataFingerprint != data.Train.Fingerprint())
            throw new InfluenceSharpException($"{factorsDir}/manifest.json: factors were fit on training data {factors.Manifest.DataFingerprint}, but the checkpoint's training data is {data.Train.Fingerprint()} (factors from other data)");
        var method = new InfluenceFunction(model, task, factors, options, profiler);
        var settings = new Dictionary<string, string>
        {
            ["strategy"] = factors.Strategy.ToString(), ["damping"] = dampingText, ["measure"] = task.Query.ToString(),
            ["query_rank"] = options.QueryRank.ToString(), ["bf16"] = options.BFloat16.ToString(), ["factors_model"] = factors.Manifest.ModelFingerprint,
        };
        var manifest = new ScoresManifest
        {
            Kind = kind, Method = method.Name, Settings = settings, ModelFingerprint = ModelFingerprint.Of(model),
            TrainFingerprint = data.Train.Fingerprint(), TrainCount = data.Train.Count, PartitionSize = partition,
            QueryFingerprint = kind == "pairwise" ? queries.Queries.Fingerprint() : null,
            QueryCount = kind == "pairwise" ? queries.Queries.Count : 0,
            QueryIndices = kind == "pairwise" ? queries.Indices : null, QuerySet = kind == "pairwise" ? queries.Set : null,
        };
        Console.Error.WriteLine($"{method.Name} {kind} scores; damping per layer: {string.Join(", ", method.Layers.Zip(method.Dampings()).Select(x => $"{x.First.Name} {x.Second:G3}"))}");
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
            PartitionedScoring.BlockProducer produce = PartitionedScoring.Totals(method, queries.Queries);
            if (perLayer)
            {
                names.AddRange(method.Layers.Select(l => "scores-" + l.Name));
                produce = (train, sink) => method.PairwiseByLayer(queries.Queries, train, (off, blocks) =>
                {
                    var total = blocks[0];
                    for (int i = 1; i < blocks.Length; i++) total = total + blocks[i];
                    sink(off, blocks.Prepend(total).ToArray());
                });
            }
            done = PartitionedScoring.Pairwise(produce, names.ToArray(), queries.Queries.Count, data.Train, outDir, manifest, shard, profiler);
            Storage.Json.WriteFile(Path.Combine(outDir, "query_indices.json"), new { set = queries.Set, indices = queries.Indices });
            if (done && options.BFloat16) CompareWithFloat32(model, task, factors, options, queries.Queries, data.Train, outDir, profiler);
        }
        PrintProfile(profiler);
        Console.WriteLine(done ? $"scores written to {outDir}" : $"shard {shard} done; run again without --shard to merge when all shards have finished");
        return 0;
    }

    /// <summary>Seed 002's half-precision check: Spearman between bf16 and fp32 scores on (up to)
    /// the first 2,000 training examples.</summary>
    static void CompareWithFloat32(TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor> model, IAttributionTask task, Factors factors,
        ScoreOptions options, Data.ImageDataset queries, Data.ImageDataset train, string outDir, Profiler profiler)
    {
        int n = Math.Min(2000, train.Count);
        var part = Data.SubsetDataset.Range(train, 0, n);
        var fp32 = new InfluenceFunction(model, task, factors, options with { BFloat16 = false, Progress = null }, profiler).PairwiseMatrix(queries, part);
        using var bf = Npy.Read(Path.Combine(outDir, PartitionedScoring.PairwiseFile));
        var bf16 = bf.narrow(1, 0, n);
        double rho = Evaluation.Ranking.Spearman(fp32.to(TorchSharp.torch.ScalarType.Float64).flatten().data<double>().ToArray(),
            bf16.to(TorchSharp.torch.ScalarType.Float64).flatten().data<double>().ToArray());
        Console.WriteLine($"bfloat16 vs float32 scores on the first {n} training examples: Spearman {rho:F4}");
    }
}
