using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence build-store` and `influence scores ... --method M`: TracIn and TRAK features of
/// the training set computed once into RUN_DIR/store and reused for every later query set.</summary>
public static class FeatureCommands
{
    public const string BuildHelp = """
        influence build-store --run RUN_DIR --method M [--shard i/n] [options]

          --method M           tracin, tracin-last, tracin-proj, graddot, gradcos, trak
          --shard i/n          compute only blocks b with b % n == i (run again without --shard to finish)
          --proj-dim K, --proj-layout kronecker|dense, --ensemble N, --layers NAMES, --measure loss|margin
        The store is resumable: an interrupted build computes only its missing blocks.
        """;

    public static int BuildStore(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(BuildHelp); return 0; }
        string runDir = a.Required("run");
        string name = MethodFactory.ParseList(a.Required("method")).Single();
        var settings = MethodSettings.From(a);
        var shard = CommandSupport.ShardOf(a);
        string? dataSpec = a.Str("data");
        a.RejectUnknown();
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        if (MethodFactory.Create(name, run, settings, profiler) is not FeatureMethod method)
            throw new UsageException($"--method {name}: influence functions keep factors, not a feature store (use fit-factors)");
        int built = method.BuildStore(run.Data.Train, shard);
        var store = method.OpenStore(run.Data.Train);
        Console.Error.Write(profiler.Table());
        Console.WriteLine($"{name}: computed {built} blocks; store {(store.IsComplete ? "complete" : $"missing {store.Missing(null).Count} blocks")}");
        return 0;
    }

    public static int Scores(Args a, string kind)
    {
        string runDir = a.Required("run");
        string name = MethodFactory.ParseList(a.Required("method")).Single();
        string outDir = a.Required("out");
        var settings = MethodSettings.From(a);
        int partition = a.Int("partition-size", 10000);
        var shard = CommandSupport.ShardOf(a);
        string? dataSpec = a.Str("data");
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        var queries = kind == "pairwise" ? CommandSupport.Queries(a, run.Data) : default;
        a.RejectUnknown();
        var method = MethodFactory.Create(name, run, settings, profiler);
        // A feature method scores against its whole-training-set store: one partition.
        if (method is FeatureMethod) partition = run.Data.Train.Count;
        var manifest = new ScoresManifest
        {
            Kind = kind, Method = method.Name, Settings = new Dictionary<string, string> { ["settings"] = settings.ToString() },
            ModelFingerprint = string.Join(",", run.Checkpoints.Select(c => c.Hash)), TrainFingerprint = run.Data.Train.Fingerprint(),
            TrainCount = run.Data.Train.Count, PartitionSize = partition,
            QueryFingerprint = kind == "pairwise" ? queries.Queries.Fingerprint() : null, QueryCount = kind == "pairwise" ? queries.Queries.Count : 0,
            QueryIndices = kind == "pairwise" ? queries.Indices : null, QuerySet = kind == "pairwise" ? queries.Set : null,
        };
        bool done;
        if (kind == "self")
            done = PartitionedScoring.Self(method, run.Data.Train, outDir, manifest, shard, profiler) is not null;
        else
        {
            // Feature methods score the whole stored training set block by block; partitions of the
            // output still let a job resume or split.
            done = PartitionedScoring.Pairwise(PartitionedScoring.Totals(method, queries.Queries), new[] { "scores" }, queries.Queries.Count,
                run.Data.Train, outDir, manifest, shard, profiler);
            Json.WriteFile(Path.Combine(outDir, "query_indices.json"), new { set = queries.Set, indices = queries.Indices });
        }
        Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, $"profile-scores-{kind}.txt"), profiler.Table());
        Console.WriteLine(done ? $"scores written to {outDir}" : $"shard {shard} done; run again without --shard to merge");
        return 0;
    }
}
