using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Reporting;
using InfluenceSharp.Runs;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence detect-mislabeled`: rank training examples by self-influence and, when the run
/// recorded which labels it corrupted, score the ranking (found-at table, ROC AUC, curves).</summary>
public static class DetectCommand
{
    public sealed record MethodDetection(string Method, double Seconds, DetectionResult? Result, int[] Top);

    public static Command Command()
    {
        var run = Opt.Run();
        var methods = Opt.Methods(MethodFactory.Defaults(MethodRole.Detection), MethodFactory.Names, single: false);
        var outDir = Opt.Out("self_influence-M.npy, detection.json, detection-curve.png, self-influence-M.png, suspicious-M.png/.csv [default: RUN_DIR/detect]");
        var top = Opt.Int("--top", "suspicious examples to list and show", 24, 1);
        var ms = new MethodSettingOptions();
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("detect-mislabeled", "rank training examples by self-influence; with the run's corruption record: found-at-5/10/20/30% table, ROC AUC, plots")
        {
            run, methods, outDir, top,
        };
        CommandSupport.AddRunMethodAction(cmd, run, methods, ms, data, compute, (p, runDir, quiet) =>
        {
            return Run(runDir, p.GetValue(methods)!, p.GetValue(outDir) ?? Path.Combine(runDir, "detect"), p.GetValue(top), ms.Read(p), p.GetValue(data), quiet);
        });
        return cmd;
    }

    static int Run(string runDir, string[] methods, string outDir, int top, MethodSettings settings, string? dataSpec, bool quiet)
    {
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        var results = Detect(run, methods, settings, outDir, top, profiler, quiet, print: true);
        PrintTable(results, run);
        if (!quiet) Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, "profile-detect.txt"), profiler.Table());
        Console.WriteLine($"detection results in {outDir}");
        return 0;
    }

    internal static List<MethodDetection> Detect(Run run, IReadOnlyList<string> methods, MethodSettings settings, string outDir,
        int top, Profiler profiler, bool quiet = false, bool? print = null)
    {
        MethodFactory.CheckMeasure(run, settings);
        if (RunTask.IsText(run))
            throw new UsageException($"detect-mislabeled: the run was trained on text with a language model ({run.Data.Source}): its sequences have no labels to check; for labelled texts train on --data text-classes:FILE");
        OutputDirectory.Create(outDir);
        var train = run.Data.Train;
        var mask = run.Data.Corruption?.Mask(train.Count);
        var predicted = run.PredictedTrainLabels();
        var list = new List<MethodDetection>();
        foreach (var m in methods)
        {
            var sw = Stopwatch.StartNew();
            var method = MethodFactory.Create(m, run, settings, profiler, quiet);
            string name = MethodFactory.Label(m, settings);
            var self = method.SelfInfluence(train);
            MethodLifetime.Release(method);
            double secs = sw.Elapsed.TotalSeconds;
            Npy.Write(Path.Combine(outDir, $"self_influence-{name}.npy"), self, self.Length);
            var order = Enumerable.Range(0, self.Length).OrderByDescending(i => self[i]).ToArray();
            var result = mask is null ? null : MislabelDetection.Evaluate(self, mask);
            list.Add(new MethodDetection(name, secs, result, order.Take(top).ToArray()));
            // Texts have no image grid: suspicious-M.csv carries each example's text instead.
            var texts = train as TextClassDataset;
            using (profiler.Stage("Plots"))
            {
                if (texts is null) Figures.Suspicious(name, train, self, run.Data.Corruption, run.ClassNames, top).SavePng(Path.Combine(outDir, $"suspicious-{name}.png"));
                if (mask is not null) Figures.SelfInfluenceDistribution(name, self, mask).SavePng(Path.Combine(outDir, $"self-influence-{name}.png"));
            }
            var truth = new Dictionary<int, int>();
            if (run.Data.Corruption is { } rec) for (int t = 0; t < rec.Indices.Length; t++) truth[rec.Indices[t]] = rec.TrueLabels[t];
            var csv = new System.Text.StringBuilder("rank,index,self_influence,given_label,predicted_label,true_label_if_corrupted,source" + (texts is null ? "\n" : ",text\n"));
            for (int r = 0; r < Math.Min(order.Length, Math.Max(top, 100)); r++)
            {
                int i = order[r];
                csv.Append(System.FormattableString.Invariant($"{r + 1},{i},{self[i]:G6},{SourceText.Csv(run.ClassNames[train.Labels[i]])},{SourceText.Csv(run.ClassNames[predicted[i]])},{(truth.TryGetValue(i, out var tl) ? SourceText.Csv(run.ClassNames[tl]) : "")},{SourceText.Csv(SourceText.Of(train, i))}"))
                    .Append(texts is null ? "\n" : "," + SourceText.Csv(texts.Texts[i]) + "\n");
            }
            AtomicFile.WriteAllText(Path.Combine(outDir, $"suspicious-{name}.csv"), csv.ToString());
            if ((print ?? !quiet) && mask is null)
            {
                Console.WriteLine($"{name}: most suspicious training examples (index: given label / predicted label):");
                foreach (var i in order.Take(top)) Console.WriteLine($"  #{i}: {run.ClassNames[train.Labels[i]]} / {run.ClassNames[predicted[i]]}  (self-influence {self[i]:G4}){(train.SourceOf(i) is { } src ? "  " + src.Text : "")}"
                    + (texts is null ? "" : "  " + ExplainCommand.Quote(texts.Texts[i])));
            }
        }
        // detection.json keeps every method's results: this run's replace the same methods' earlier
        // ones (newest wins), the others stay, so that the report shows all of them.
        string jsonPath = Path.Combine(outDir, "detection.json");
        var fresh = list.Select(m => JsonSerializer.SerializeToNode(new
        {
            method = m.Method, seconds = m.Seconds, roc_auc = m.Result?.RocAuc,
            found_at = m.Result?.Table.ToDictionary(kv => $"{kv.Key * 100:F0}%", kv => kv.Value),
            curve = m.Result?.Found, top = m.Top,
            top_sources = train.Sources is null ? null : m.Top.Select(i => SourceText.Of(train, i)).ToArray(),
        }, Json.Options)!).ToList();
        // Read, merge and write under the folder's manifest lock: a concurrent detect with other
        // methods must not drop this one's results, nor this one drop theirs.
        using var mergeLock = OutputLock.Manifest(outDir, "detect-mislabeled");
        var merged = new List<JsonNode>();
        var names = list.Select(m => m.Method).ToHashSet();
        foreach (var old in EarlierResults(jsonPath, quiet))
            if (old["method"]?.GetValue<string>() is { } oldName && !names.Contains(oldName)) { merged.Add(old); names.Add(oldName); }
        merged.AddRange(fresh);
        var withResults = new Dictionary<string, DetectionResult>();
        foreach (var node in merged)
        {
            string name = node["method"]!.GetValue<string>();
            if (list.FirstOrDefault(m => m.Method == name) is { } now) { if (now.Result is not null) withResults[name] = now.Result; }
            else if (mask is not null && File.Exists(Path.Combine(outDir, $"self_influence-{name}.npy")))
            {
                using var t = Npy.Read(Path.Combine(outDir, $"self_influence-{name}.npy"));
                using var d = t.to(TorchSharp.torch.ScalarType.Float64);
                var self = d.data<double>().ToArray();
                if (self.Length == mask.Length) withResults[name] = MislabelDetection.Evaluate(self, mask);
            }
        }
        if (withResults.Count > 0) Figures.DetectionCurves(withResults).SavePng(Path.Combine(outDir, "detection-curve.png"));
        AtomicFile.WriteAllText(jsonPath, new JsonArray(merged.Select(n => (JsonNode?)n.DeepClone()).ToArray()).ToJsonString(Json.Options) + "\n");
        return list;
    }

    /// <summary>The entries of an earlier detection.json (none when there is none; a damaged one is
    /// replaced, with a warning).</summary>
    static List<JsonNode> EarlierResults(string path, bool quiet)
    {
        if (!File.Exists(path)) return new List<JsonNode>();
        try
        {
            if (JsonNode.Parse(File.ReadAllText(path)) is JsonArray array && array.All(n => n is JsonObject o && o["method"] is JsonValue v && v.TryGetValue<string>(out _)))
                return array.Select(n => n!.DeepClone()).ToList();
        }
        catch (JsonException) { }
        if (!quiet) Console.Error.WriteLine($"warning: {path}: damaged; replaced by this run's results");
        return new List<JsonNode>();
    }

    internal static void PrintTable(List<MethodDetection> results, Run run)
    {
        if (run.Data.Corruption is null) return;
        Console.WriteLine($"mislabel detection: {run.Data.Corruption.Indices.Length} of {run.Data.Train.Count} labels corrupted; fraction found when inspecting the top ...");
        Console.WriteLine($"{"method",-12} {"5%",7} {"10%",7} {"20%",7} {"30%",7} {"ROC AUC",8} {"seconds",8}");
        foreach (var m in results)
        {
            var t = m.Result!.Table;
            Console.WriteLine($"{m.Method,-12} {t[0.05],7:P1} {t[0.1],7:P1} {t[0.2],7:P1} {t[0.3],7:P1} {m.Result.RocAuc,8:F3} {m.Seconds,8:F1}");
        }
    }
}
