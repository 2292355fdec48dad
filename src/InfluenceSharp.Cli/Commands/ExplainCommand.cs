using InfluenceSharp.Data;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence explain`: the most helpful (proponents) and most harmful (opponents) training
/// examples for some queries, by an exact streaming top-k over training batches (the score matrix
/// is never held whole).</summary>
public static class ExplainCommand
{
    public const string Help = """
        influence explain --run RUN_DIR --query I[,J,...] [options]

          --query I,J,...      query indices in the query set
          --queries test|train query set (default test)
          --method M           ekfac, kfac, diagonal, identity, ...   (default ekfac)
          --top K              proponents and opponents per query (default 8)
          --measure loss|margin (default loss)
          --out DIR            (default RUN_DIR/explain)
        Writes explain-<method>.json (indices, scores, labels) and explain-<method>-q<I>.png grids.
        """;

    public static int Run(Args a)
    {
        if (a.Flag("help")) { Console.WriteLine(Help); return 0; }
        string runDir = a.Required("run");
        var queryIdx = a.IntList("query", Array.Empty<int>());
        if (queryIdx.Length == 0) throw new UsageException("--query I[,J,...] is required");
        string set = a.Str("queries", "test");
        string method = MethodFactory.ParseList(a.Str("method", "ekfac")).Single();
        int k = a.Int("top", 8);
        if (k < 1) throw new UsageException($"--top {k}: must be at least 1");
        string outDir = a.Str("out") ?? Path.Combine(runDir, "explain");
        var settings = MethodSettings.From(a);
        string? dataSpec = a.Str("data");
        a.RejectUnknown();
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        Explain(run, method, settings, set, queryIdx, k, outDir, profiler);
        Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, "profile-explain.txt"), profiler.Table());
        Console.WriteLine($"explanations in {outDir}");
        return 0;
    }

    internal static TopKResult Explain(RunContext run, string methodName, MethodSettings settings, string set, int[] queryIdx, int k,
        string outDir, Profiler profiler, bool quiet = false)
    {
        var source = set switch
        {
            "test" => run.Data.Test, "train" => run.Data.Train,
            _ => throw new UsageException($"--queries {set}: choose test or train"),
        };
        foreach (var q in queryIdx)
            if (q < 0 || q >= source.Count) throw new UsageException($"--query {q}: outside the {set} set (0..{source.Count - 1})");
        var queries = source.Subset(queryIdx);
        var method = MethodFactory.Create(methodName, run, settings, profiler, quiet);
        var topk = new StreamingTopK(queries.Count, k);
        using (profiler.Stage("Top-k"))
            method.Pairwise(queries, run.Data.Train, (off, block) => topk.Add(block, off));
        var result = topk.Result();
        Directory.CreateDirectory(outDir);
        var names = run.ClassNames;
        var train = run.Data.Train;
        var json = new List<object>();
        for (int r = 0; r < queryIdx.Length; r++)
        {
            string caption = $"{set} #{queryIdx[r]}";
            Figures.Explanation(methodName, queries, r, caption, train, result, r, names, run.Data.Corruption)
                .SavePng(Path.Combine(outDir, $"explain-{methodName}-{set}{queryIdx[r]}.png"));
            object Row(int i, double s) => new { index = i, score = s, label = names[train.Labels[i]] };
            json.Add(new
            {
                query = queryIdx[r], set, label = names[queries.Labels[r]],
                proponents = result.Proponents[r].Zip(result.ProponentScores[r]).Select(p => Row(p.First, p.Second)).ToList(),
                opponents = result.Opponents[r].Zip(result.OpponentScores[r]).Select(p => Row(p.First, p.Second)).ToList(),
            });
            if (!quiet)
            {
                Console.WriteLine($"query {caption} ({names[queries.Labels[r]]}):");
                Console.WriteLine("  proponents: " + string.Join(", ", result.Proponents[r].Zip(result.ProponentScores[r]).Select(p => $"#{p.First} {names[train.Labels[p.First]]} {p.Second:G3}")));
                Console.WriteLine("  opponents:  " + string.Join(", ", result.Opponents[r].Zip(result.OpponentScores[r]).Select(p => $"#{p.First} {names[train.Labels[p.First]]} {p.Second:G3}")));
            }
        }
        Json.WriteFile(Path.Combine(outDir, $"explain-{methodName}.json"), json);
        return result;
    }
}
