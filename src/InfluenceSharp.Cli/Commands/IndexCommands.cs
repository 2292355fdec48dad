using System.CommandLine;
using System.Diagnostics;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence index build`: an approximate maximum-inner-product index (IVF, k-means lists)
/// over a feature store, kept in STORE/index, that `explain --index` searches.</summary>
public static class IndexCommands
{
    /// <summary>Feature methods whose scores are inner products of stored rows (FeatureMethod.HasInnerProductForm).</summary>
    public static string[] IndexMethodNames => MethodFactory.IndexMethods;

    public static Command Command()
    {
        var cmd = new Command("index", "approximate top-k indexes over feature stores, for repeated queries at scale");
        cmd.Add(BuildCommand());
        return cmd;
    }

    static Command BuildCommand()
    {
        var run = Opt.Run();
        var methods = Opt.Methods(null, IndexMethodNames, single: true, required: true);
        var ms = new MethodSettingOptions(damping: false, offered: AttributionMethods.All.Where(d => d.IsIndexable).ToList());
        var lists = Opt.Int("--lists", "inverted lists (k-means centroids); 0 = about 4 sqrt(n), at most the number of training examples", 0, 0);
        var seed = Opt.Int("--index-seed", "seeds the k-means sample and initial centroids (the same seed gives the same index)", 0, 0, helpName: "S");
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("build", "an inverted-file index (k-means lists, inner-product search) of a method's training-set store, in STORE/index " +
            "(builds the store first if needed; resumable; refused by explain --index once the store changes)")
        {
            run, methods,
        };
        ms.AddTo(cmd);
        ms.RefuseUnused(cmd, methods);
        cmd.Add(lists); cmd.Add(seed); cmd.Add(data);
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            return Build(p.GetValue(run)!, p.GetValue(methods)![0], ms.Read(p), p.GetValue(lists), p.GetValue(seed), p.GetValue(data), quiet);
        });
        return cmd;
    }

    static int Build(string runDir, string name, MethodSettings settings, int lists, int seed, string? dataSpec, bool quiet)
    {
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        int n = run.Data.Train.Count;
        if (lists > n) throw new UsageException($"--lists {lists}: more lists than the {n} training examples");
        var method = (FeatureMethod)MethodFactory.Create(name, run, settings, profiler, quiet);
        var sw = Stopwatch.StartNew();
        using var index = method.BuildIndex(run.Data.Train, new IndexOptions { Lists = lists, Seed = seed, Progress = quiet ? null : new ConsoleProgress() });
        var sizes = Enumerable.Range(0, index.Lists).Select(index.ListSize).ToArray();
        if (!quiet) Console.Error.Write(profiler.Table());
        if (!quiet && MethodFactory.IndexNote(name) is { } note) Console.Error.WriteLine(note);
        Console.WriteLine($"{name}: index of {index.Count} rows x {index.Manifest.Dim} in {index.Lists} lists (sizes {sizes.Min()}..{sizes.Max()}, mean {sizes.Average():F0}) " +
            $"in {index.Directory} ({sw.Elapsed.TotalSeconds:F1} s)");
        return 0;
    }
}
