using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Methods;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence build-store` and `influence scores ... --methods M`: TracIn and TRAK features of
/// the training set computed once into RUN_DIR/store and reused for every later query set.</summary>
public static class FeatureCommands
{
    public static string[] FeatureMethodNames => MethodFactory.FeatureMethods;

    public static Command BuildStoreCommand()
    {
        var run = Opt.Run();
        var methods = Opt.Methods(null, FeatureMethodNames, single: true, required: true);
        var ms = new MethodSettingOptions(damping: false, offered: AttributionMethods.All.Where(d => d.IsFeatureMethod).ToList());
        var shard = Opt.Shard("compute only blocks b with b % n == i (run again without --shard to finish)");
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("build-store", "TracIn / TRAK training-set features computed once into RUN_DIR/store and reused by every later command " +
            "(resumable: an interrupted build computes only its missing blocks)")
        {
            run, methods,
        };
        ms.AddTo(cmd);
        ms.RefuseUnused(cmd, methods);
        cmd.Add(shard); cmd.Add(data);
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            return BuildStore(p.GetValue(run)!, p.GetValue(methods)![0], ms.Read(p), p.GetValue(shard), p.GetValue(data), quiet);
        });
        return cmd;
    }

    static int BuildStore(string runDir, string name, MethodSettings settings, Shard shard, string? dataSpec, bool quiet)
    {
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        if (MethodFactory.Create(name, run, settings, profiler, quiet) is not FeatureMethod method)
            throw new UsageException($"--methods {name}: influence functions keep factors, not a feature store (use fit-factors)");
        int built = method.BuildStore(run.Data.Train, shard);
        var store = method.OpenStore(run.Data.Train);
        if (!quiet) Console.Error.Write(profiler.Table());
        Console.WriteLine($"{name}: computed {built} blocks; store {(store.IsComplete ? "complete" : $"missing {store.Missing(null).Count} blocks")}");
        return 0;
    }

    /// <summary>A scores manifest's settings of a method: the common settings' text, and each method
    /// parameter given.</summary>
    internal static Dictionary<string, string> SettingsEntries(MethodSettings settings)
    {
        return new Dictionary<string, string> { ["settings"] = settings.Key() };
    }

    internal static int Scores(string kind, string runDir, string name, string outDir, MethodSettings settings, int partition, Shard shard, string? dataSpec,
        string querySet, int[]? queryIndices, int? queryCount, bool quiet, int? queryBlock = null)
    {
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        var queries = kind == "pairwise" ? CommandSupport.Queries(run.Data, querySet, queryIndices, queryCount) : default;
        var method = MethodFactory.Create(name, run, settings, profiler, quiet);
        if (method is FeatureMethod features)
        {
            // A feature method scores against its whole-training-set store: one partition of the
            // output (scoring a slice would build another store, and TRAK's kernel must see the whole
            // set). --shard i/n therefore splits the store's blocks, like build-store --shard.
            partition = run.Data.Train.Count;
            if (shard != Shard.All)
            {
                int built = features.BuildStore(run.Data.Train, shard);
                var store = features.OpenStore(run.Data.Train);
                if (!quiet) Console.Error.Write(profiler.Table());
                Console.WriteLine(store.IsComplete
                    ? $"shard {shard}: computed {built} store blocks; the store is complete: run again without --shard to score"
                    : $"shard {shard}: computed {built} store blocks; {store.Missing(null).Count} blocks of other shards missing; run again without --shard to finish and score");
                return 0;
            }
        }
        int block = kind != "pairwise" ? 0 : queryBlock ?? QueryBlocks.Auto(QueryBlocks.ParameterCount(run.Last));
        var manifest = ScoresManifest.For(kind, name, SettingsEntries(settings),
            string.Join(",", run.Checkpoints.Select(c => c.Hash)), run.Data.Train, partition, kind == "pairwise" ? queries : null, block);
        if (!quiet && kind == "pairwise" && QueryBlocks.Describe(queries.Queries.Count, block) is { } blocks) Console.Error.WriteLine(blocks);
        bool done;
        if (kind == "self")
            done = PartitionedScoring.Self(method, run.Data.Train, outDir, manifest, shard, profiler) is not null;
        else
        {
            // Feature methods score the whole stored training set block by block; partitions of the
            // output still let a job resume or split.
            done = PartitionedScoring.Pairwise(PartitionedScoring.Totals(method), new[] { "scores" }, queries.Queries,
                run.Data.Train, outDir, manifest, shard, profiler);
            Json.WriteFile(Path.Combine(outDir, "query_indices.json"), new { set = queries.Set, indices = queries.Indices });
        }
        if (!quiet) Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, $"profile-scores-{kind}.txt"), profiler.Table());
        Console.WriteLine(done ? $"scores written to {outDir}" : $"shard {shard} done; run again without --shard to merge");
        return 0;
    }
}
