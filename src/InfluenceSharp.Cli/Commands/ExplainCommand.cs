using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
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
        influence explain --run RUN_DIR --query-image FILE.png [--query-label L] [options]

          --query I,J,...      query indices in the query set
          --query-image FILE   a PNG of the data set's size (gray or RGB) as the query
          --query-label L      its label (class index or name; default: the model's prediction)
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
        string? image = a.Str("query-image"), label = a.Str("query-label");
        if (queryIdx.Length == 0 && image is null) throw new UsageException("--query I[,J,...] or --query-image FILE is required");
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
        var (queries, captions) = image is null ? FromIndices(run, set, queryIdx) : FromImage(run, image, label);
        Explain(run, method, settings, queries, captions, k, outDir, profiler);
        Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, "profile-explain.txt"), profiler.Table());
        Console.WriteLine($"explanations in {outDir}");
        return 0;
    }

    internal static (ImageDataset Queries, string[] Captions) FromIndices(RunContext run, string set, int[] queryIdx)
    {
        var source = set switch
        {
            "test" => run.Data.Test, "train" => run.Data.Train,
            _ => throw new UsageException($"--queries {set}: choose test or train"),
        };
        foreach (var q in queryIdx)
            if (q < 0 || q >= source.Count) throw new UsageException($"--query {q}: outside the {set} set (0..{source.Count - 1})");
        return (source.Subset(queryIdx), queryIdx.Select(q => $"{set}{q}").ToArray());
    }

    /// <summary>An image file (PNG, JPEG, BMP, ...) as a one-example query set: it must have the data set's height and width; RGB
    /// is converted to luminance for gray data sets.</summary>
    internal static (ImageDataset Queries, string[] Captions) FromImage(RunContext run, string path, string? label)
    {
        var train = run.Data.Train;
        var image = ImageFile.Load(path, train.Channels);
        if (image.Width != train.Width || image.Height != train.Height)
            throw new InfluenceSharpException($"{path}: image is {image.Width}x{image.Height} but the model takes {train.Width}x{train.Height}");
        var pixels = image.Pixels;
        int y;
        if (label is null)
        {
            var unlabeled = new ImageDataset("query", pixels, new[] { 0 }, train.Channels, train.Height, train.Width, train.NumClasses);
            using var scope = TorchSharp.torch.NewDisposeScope();
            using var noGrad = TorchSharp.torch.no_grad();
            y = (int)run.Last.LoadModel().forward(unlabeled.Inputs(new[] { 0 })).argmax(1).item<long>();
        }
        else if (int.TryParse(label, out var li) && li >= 0 && li < train.NumClasses) y = li;
        else
        {
            y = run.ClassNames.ToList().FindIndex(n => string.Equals(n, label, StringComparison.OrdinalIgnoreCase));
            if (y < 0) throw new UsageException($"--query-label {label}: not a class index or name ({string.Join(", ", run.ClassNames)})");
        }
        return (new ImageDataset("query", pixels, new[] { y }, train.Channels, train.Height, train.Width, train.NumClasses),
            new[] { Path.GetFileNameWithoutExtension(path) });
    }

    internal static TopKResult Explain(RunContext run, string methodName, MethodSettings settings, ImageDataset queries, string[] captions, int k,
        string outDir, Profiler profiler, bool quiet = false)
    {
        var method = MethodFactory.Create(methodName, run, settings, profiler, quiet);
        var topk = new StreamingTopK(queries.Count, k);
        using (profiler.Stage("Top-k"))
            method.Pairwise(queries, run.Data.Train, (off, block) => topk.Add(block, off));
        var result = topk.Result();
        Directory.CreateDirectory(outDir);
        var names = run.ClassNames;
        var train = run.Data.Train;
        var json = new List<object>();
        for (int r = 0; r < queries.Count; r++)
        {
            string caption = captions[r];
            Figures.Explanation(methodName, queries, r, caption, train, result, r, names, run.Data.Corruption)
                .SavePng(Path.Combine(outDir, $"explain-{methodName}-{caption}.png"));
            object Row(int i, double s) => new { index = i, score = s, label = names[train.Labels[i]] };
            json.Add(new
            {
                query = caption, label = names[queries.Labels[r]],
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
