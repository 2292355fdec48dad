using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Scores;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence data clean`: a cleaned copy of a run's image folder or CSV table, without the
/// training examples a detection or curation flagged (or as a decisions file says), the original untouched.</summary>
public static class CleanCommand
{
    public static Command Command()
    {
        var run = Opt.Run();
        var from = Opt.Str("--from", "what to act on: detect-mislabeled's output (RUN_DIR/detect, detection.json, suspicious-M.csv or self_influence-M.npy: the highest self-influence first), " +
            "curate's output (its folder or ranking-M.csv: the most detrimental first), or a decisions CSV with the columns index,source,decision[,label] " +
            "(decision remove, relabel or keep; label: the new class of a relabel)", "PATH", required: true);
        var top = Opt.OptionalInt("--top", "with a detection or curation: leave out the K highest-ranked training examples", 1, int.MaxValue, "K");
        var method = Opt.Str("--method", "which method's ranking of a detection or curation [default: its first]", "M");
        var outDir = Opt.Out("a new folder for the cleaned copy: OUT/NAME (the data, named like the original), OUT/changes.csv (what was left out or relabelled, and why), OUT/clean.json", required: true);
        var quarantine = Opt.Flag("--quarantine", "image folders: also copy the left-out files to OUT/quarantine/ (same relative paths), with quarantine.csv saying why");
        var keepSplit = Opt.Flag("--keep-split", "when the run split the data by seed: keep its test set in the copy (an image folder gets train/ and test/ folders, a CSV table NAME-test.csv beside it), so that a model trained on the copy is tested on the same examples");
        var overwrite = Opt.Flag("--overwrite", "replace OUT when it holds an earlier cleaned copy");
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("clean", "write a cleaned copy of a run's image folder or CSV table: the flagged files or rows left out (or relabelled), the original untouched")
        {
            run, from, top, method, outDir, quarantine, keepSplit, overwrite, data,
        };
        compute.AddTo(cmd);
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            return Run(p.GetValue(run)!, p.GetValue(from)!, p.GetValue(top), p.GetValue(method), p.GetValue(outDir)!, p.GetValue(quarantine),
                p.GetValue(keepSplit), p.GetValue(overwrite), p.GetValue(data), quiet);
        });
        return cmd;
    }

    enum FromKind { Detection, Curation, Decisions }

    static int Run(string runDir, string from, int? top, string? method, string outDir, bool quarantine, bool keepSplit, bool overwrite, string? dataSpec, bool quiet)
    {
        if (!File.Exists(from) && !Directory.Exists(from)) throw new UsageException($"--from {from}: no such file or folder");
        var (kind, path, impliedMethod) = Classify(from);
        if (kind == FromKind.Decisions)
        {
            if (top is not null) throw new UsageException("--top: not with a decisions file (it says what to do with each example)");
            if (method is not null) throw new UsageException("--method: not with a decisions file");
        }
        else if (top is null) throw new UsageException($"--top K: how many of the {(kind == FromKind.Detection ? "most suspicious" : "most detrimental")} training examples to leave out");
        if (method is not null && impliedMethod is not null && method != impliedMethod)
            throw new UsageException($"--method {method}: --from {from} is the ranking of {impliedMethod}");
        // Refuse what cannot be cleaned before loading the run.
        var rc = RunContext.Load(runDir, dataSpec);
        var spec = DataSpec.Parse(rc.Data.Source);
        if (spec.Kind != DataKind.ImageFolder && spec.Kind != DataKind.Csv) throw new InfluenceSharpException(DataCleaner.CannotClean(spec));
        var train = rc.Data.Train;
        List<CleanItem> items;
        string? usedMethod = null;
        if (kind == FromKind.Decisions) items = ReadDecisions(path, train);
        else
        {
            usedMethod = method ?? impliedMethod ?? DefaultMethod(kind, path);
            var (order, scores) = kind == FromKind.Detection ? DetectionRanking(path, usedMethod, train) : CurationRanking(path, usedMethod, train);
            if (top > order.Length) throw new UsageException($"--top {top}: the ranking of {usedMethod} lists only {order.Length} of the run's {train.Count} training examples");
            var predicted = rc.PredictedTrainLabels();
            items = order.Take(top!.Value).Select((i, r) => new CleanItem(i, CleanDecision.Remove)
            {
                Method = usedMethod, Score = scores[i], Rank = r + 1, PredictedLabel = predicted[i],
            }).ToList();
        }
        var result = DataCleaner.Clean(rc.Data.Source, train, items, new CleanOptions(outDir)
        {
            Quarantine = quarantine, Overwrite = overwrite,
            KeepTestSet = keepSplit && spec["split-seed"] is not null ? rc.Data.Test.Sources : null,
            Provenance = new()
            {
                ["run"] = Path.GetFullPath(runDir), ["from"] = Path.GetFullPath(from), ["method"] = usedMethod,
                ["top"] = top?.ToString(CultureInfo.InvariantCulture),
            },
        });
        string what = spec.Kind == DataKind.ImageFolder ? "files" : "rows";
        Console.WriteLine($"data clean: {result.Removed} training {what} left out{(result.Quarantined > 0 ? $" (copied to {Path.Combine(Path.GetFullPath(outDir), DataCleaner.QuarantineDir)})" : "")}, " +
            $"{result.Relabeled} relabelled{(kind == FromKind.Decisions ? $", {result.Kept} kept" : $" ({usedMethod}, top {top})")}; the original is unchanged");
        Console.WriteLine($"cleaned copy: {result.DataPath}");
        Console.WriteLine($"what changed and why: {Path.Combine(Path.GetFullPath(outDir), DataCleaner.ChangesFile)}");
        Console.WriteLine($"train on it: influence train --data '{result.Spec}' ...");
        if (!quiet)
        {
            if (spec["split-seed"] is not null && !keepSplit)
                Console.Error.WriteLine("note: the run's test set was a seeded split of the data; the cleaned copy has fewer examples, so its split differs " +
                    "(some test examples become training examples and the reverse); --keep-split keeps the run's test set");
            if (spec["split-seed"] is null && keepSplit)
                Console.Error.WriteLine("note: --keep-split: the data have a test set of their own (test/ folder or test file), which the copy keeps anyway");
            if (rc.Data.Corruption is not null)
                Console.Error.WriteLine("note: this run corrupted labels itself (train --corrupt); the files hold the original labels");
        }
        return 0;
    }

    static (FromKind Kind, string Path, string? Method) Classify(string from)
    {
        if (Directory.Exists(from))
        {
            if (File.Exists(Path.Combine(from, "detection.json")) || Directory.GetFiles(from, "self_influence-*.npy").Length > 0) return (FromKind.Detection, from, null);
            if (File.Exists(Path.Combine(from, CurateCommand.ResultFile)) || Directory.GetFiles(from, "ranking-*.csv").Length > 0) return (FromKind.Curation, from, null);
            throw new UsageException($"--from {from}: holds neither detect-mislabeled's output (detection.json, self_influence-M.npy) nor curate's (ranking-M.csv)");
        }
        string name = Path.GetFileName(from), dir = Path.GetDirectoryName(Path.GetFullPath(from))!;
        if (name == "detection.json") return (FromKind.Detection, dir, null);
        if (name == CurateCommand.ResultFile) return (FromKind.Curation, dir, null);
        if (Strip(name, "suspicious-", ".csv") is { } m1) return (FromKind.Detection, dir, m1);
        if (Strip(name, "self_influence-", ".npy") is { } m2) return (FromKind.Detection, dir, m2);
        if (Strip(name, "ranking-", ".csv") is { } m3) return (FromKind.Curation, dir, m3);
        var records = CsvDataReader.ReadRecords(from);
        if (records.Count > 0 && records[0].Fields.Length >= 3 && records[0].Fields.Take(3).Select(f => f.Trim()).SequenceEqual(new[] { "index", "source", "decision" }))
            return (FromKind.Decisions, from, null);
        throw new UsageException($"--from {from}: not a detection (detection.json, suspicious-M.csv, self_influence-M.npy), a curation (curation.json, ranking-M.csv) " +
            "or a decisions CSV (header index,source,decision[,label])");
    }

    static string? Strip(string name, string prefix, string suffix) =>
        name.StartsWith(prefix, StringComparison.Ordinal) && name.EndsWith(suffix, StringComparison.Ordinal) && name.Length > prefix.Length + suffix.Length
            ? name[prefix.Length..^suffix.Length] : null;

    /// <summary>The first method of the detection (detection.json's order) or curation (curation.json's).</summary>
    static string DefaultMethod(FromKind kind, string dir)
    {
        string file = Path.Combine(dir, kind == FromKind.Detection ? "detection.json" : CurateCommand.ResultFile);
        if (File.Exists(file))
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(file));
                var root = doc.RootElement;
                string? first = kind == FromKind.Detection
                    ? root.EnumerateArray().Select(m => m.GetProperty("method").GetString()).FirstOrDefault()
                    : root.GetProperty("methods").EnumerateArray().Select(m => m.GetString()).FirstOrDefault();
                if (first is not null) return first;
            }
            catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
            {
                throw new InfluenceSharpException($"{file}: malformed results file ({e.Message.Split('\n')[0]}); give --method");
            }
        }
        var found = Directory.GetFiles(dir, kind == FromKind.Detection ? "self_influence-*.npy" : "ranking-*.csv").Select(Path.GetFileName).OrderBy(f => f, StringComparer.Ordinal).ToList();
        if (found.Count == 0) throw new UsageException($"--from {dir}: no ranking found");
        return kind == FromKind.Detection ? Strip(found[0]!, "self_influence-", ".npy")! : Strip(found[0]!, "ranking-", ".csv")!;
    }

    /// <summary>Training indices by decreasing self-influence (ties: lower index first, as detect-mislabeled ranks).</summary>
    static (int[] Order, double[] Scores) DetectionRanking(string dir, string method, LabeledDataset train)
    {
        int n = train.Count;
        string file = Path.Combine(dir, $"self_influence-{method}.npy");
        if (!File.Exists(file))
        {
            var have = Directory.GetFiles(dir, "self_influence-*.npy").Select(f => Strip(Path.GetFileName(f), "self_influence-", ".npy")).ToList();
            throw new UsageException($"--method {method}: no {file} (methods detected here: {(have.Count == 0 ? "none" : string.Join(", ", have))})");
        }
        double[] self;
        using (var t = Npy.Read(file))
        using (var d = t.to_type(ScalarType.Float64).cpu())
            self = d.data<double>().ToArray();
        if (self.Length != n)
            throw new InfluenceSharpException($"{file}: {self.Length} self-influence scores, but the run has {n} training examples (a detection of another run?)");
        var order = Enumerable.Range(0, n).OrderByDescending(i => self[i]).ToArray();
        // The sources suspicious-M.csv names must be the run's (a detection of other data with as many examples is refused).
        string csv = Path.Combine(dir, $"suspicious-{method}.csv");
        if (File.Exists(csv) && CsvDataReader.ReadRecords(csv) is { Count: > 1 } records && Array.IndexOf(records[0].Fields, "source") is var src and >= 0
            && Array.IndexOf(records[0].Fields, "index") is var ci and >= 0)
            foreach (var (line, f) in records.Skip(1))
                if (f.Length > Math.Max(src, ci) && int.TryParse(f[ci], NumberStyles.None, CultureInfo.InvariantCulture, out int i) && i < n
                    && f[src].Length > 0 && f[src] != SourceText.Of(train, i))
                    throw new InfluenceSharpException($"{csv}: line {line}: example {i} is {f[src]} there but {SourceText.Of(train, i)} in the run (a detection of other data?)");
        return (order, self);
    }

    /// <summary>Training indices from ranking-M.csv, most detrimental first; the sources it names must be the run's.</summary>
    static (int[] Order, double[] Scores) CurationRanking(string dir, string method, LabeledDataset train)
    {
        string file = Path.Combine(dir, $"ranking-{method}.csv");
        if (!File.Exists(file)) throw new UsageException($"--method {method}: no {file}");
        var records = CsvDataReader.ReadRecords(file);
        if (records.Count == 0) throw new InfluenceSharpException($"{file}: empty");
        var header = records[0].Fields;
        int ci = Array.IndexOf(header, "index"), si = Array.IndexOf(header, "score"), src = Array.IndexOf(header, "source");
        if (ci < 0 || si < 0) throw new InfluenceSharpException($"{file}: no index and score columns (not written by influence curate?)");
        var order = new List<int>();
        var scores = new double[train.Count];
        foreach (var (line, f) in records.Skip(1))
        {
            if (f.Length != header.Length || !int.TryParse(f[ci], NumberStyles.None, CultureInfo.InvariantCulture, out int i) || i >= train.Count
                || !double.TryParse(f[si], NumberStyles.Float, CultureInfo.InvariantCulture, out double s))
                throw new InfluenceSharpException($"{file}: line {line} is not a ranking row of this run's {train.Count} training examples");
            if (src >= 0 && f[src].Length > 0 && f[src] != SourceText.Of(train, i))
                throw new InfluenceSharpException($"{file}: line {line}: example {i} is {f[src]} there but {SourceText.Of(train, i)} in the run (a curation of other data?)");
            order.Add(i);
            scores[i] = s;
        }
        return (order.ToArray(), scores);
    }

    /// <summary>A decisions CSV: index,source,decision[,label]; the source must name the run's example at that index.</summary>
    internal static List<CleanItem> ReadDecisions(string file, LabeledDataset train)
    {
        var records = CsvDataReader.ReadRecords(file);
        if (records.Count == 0 || records[0].Fields.Length < 3 || !records[0].Fields.Take(3).Select(f => f.Trim()).SequenceEqual(new[] { "index", "source", "decision" }))
            throw new InfluenceSharpException($"{file}: line 1: not a decisions file (header index,source,decision[,label], as `influence serve` writes)");
        var header = records[0].Fields.Select(h => h.Trim()).ToArray();
        int li = Array.IndexOf(header, "label");
        var items = new List<CleanItem>();
        var seen = new Dictionary<int, int>();
        foreach (var (line, f) in records.Skip(1))
        {
            string Where() => $"{file}: line {line}";
            if (f.Length < 3) throw new InfluenceSharpException($"{Where()}: needs index,source,decision");
            if (!int.TryParse(f[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int i) || i >= train.Count)
                throw new InfluenceSharpException($"{Where()}: index '{f[0]}' is not a training example of the run (0..{train.Count - 1})");
            if (seen.TryGetValue(i, out int before)) throw new InfluenceSharpException($"{Where()}: example {i} was already decided on line {before}");
            seen[i] = line;
            string expected = SourceText.Of(train, i);
            if (f[1].Trim() != expected)
                throw new InfluenceSharpException($"{Where()}: example {i} is {expected} in the run, not '{f[1]}' (decisions for other data?)");
            var decision = f[2].Trim().ToLowerInvariant() switch
            {
                "remove" => CleanDecision.Remove, "relabel" => CleanDecision.Relabel, "keep" => CleanDecision.Keep,
                _ => throw new InfluenceSharpException($"{Where()}: decision '{f[2]}' is not remove, relabel or keep"),
            };
            int? label = null;
            if (decision == CleanDecision.Relabel)
            {
                string text = li >= 0 && li < f.Length ? f[li].Trim() : "";
                if (text.Length == 0) throw new InfluenceSharpException($"{Where()}: relabel needs the new class in the label column");
                int byName = train.ClassNamesOrIndices.ToList().IndexOf(text);
                label = byName >= 0 ? byName
                    : int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int c) && c < train.NumClasses ? c
                    : throw new InfluenceSharpException($"{Where()}: label '{text}' is not a class ({string.Join(", ", train.ClassNamesOrIndices)})");
            }
            items.Add(new CleanItem(i, decision, label));
        }
        return items;
    }
}
