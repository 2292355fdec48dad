using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Evaluation;

/// <summary>One curated training set: the full set minus <see cref="Removed"/>, plus one extra copy
/// of each index in <see cref="Duplicated"/> (upsampling).</summary>
/// <param name="Name">Unique file-safe name, e.g. "detrimental-ekfac-k100".</param>
/// <param name="Kind">none | detrimental | helpful | random | self-influence | balance | balance-upsample.</param>
/// <param name="Method">The attribution method that chose the set (null for none, random, balance).</param>
/// <param name="K">Number of examples removed.</param>
/// <param name="Removed">Removed training indices.</param>
/// <param name="Duplicated">Training indices added once more each (an index may repeat); null for none.</param>
public sealed record CurationSetting(string Name, string Kind, string? Method, int K, int[] Removed, int[]? Duplicated = null)
{
    /// <summary>Training examples trained with another label (index, new class); null for none.</summary>
    public (int Index, int Label)[]? Relabeled { get; init; }

    /// <summary>SHA-256 prefix of the sorted removed indices (and, when there are any, of the sorted
    /// duplicated ones and of the relabelled examples with their new labels): a cached retraining
    /// counts only for the same set.</summary>
    public string RemovedHash()
    {
        var sorted = Removed.Order().ToArray();
        if (Duplicated is { Length: > 0 } dup) sorted = sorted.Append(-1).Concat(dup.Order()).ToArray();
        if (Relabeled is { Length: > 0 } rel) sorted = sorted.Append(-2).Concat(rel.OrderBy(r => r.Index).SelectMany(r => new[] { r.Index, r.Label })).ToArray();
        var bytes = new byte[sorted.Length * 4];
        Buffer.BlockCopy(sorted, 0, bytes, 0, bytes.Length);
        return Convert.ToHexStringLower(SHA256.HashData(bytes))[..32];
    }

    /// <summary>The training indices of this set, in order: the kept ones ascending, then the duplicates.</summary>
    public int[] Indices(int trainCount)
    {
        var drop = new HashSet<int>(Removed);
        return Enumerable.Range(0, trainCount).Where(i => !drop.Contains(i)).Concat(Duplicated ?? Array.Empty<int>()).ToArray();
    }
}

/// <summary>What a curation cache was made with; other settings are refused.</summary>
public sealed record CurationManifest
{
    public string Format { get; init; } = "influencesharp-curate/1";
    public required ModelSpec Model { get; init; }
    public required TrainOptions Training { get; init; }
    public required string DataFingerprint { get; init; }
    public int TrainCount { get; init; }
    public required string TestFingerprint { get; init; }
    public int TestCount { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
}

/// <summary>One retrained model's result: which test examples it gets right ('1'/'0' per example),
/// under which retraining budget ("steps" or "epochs"; null in caches from before budgets = epochs)
/// and how many optimiser steps it took.</summary>
public sealed record CurationOutcome(string Setting, int Seed, string RemovedHash, int TrainCount, string Correct,
    string? Budget = null, long? Steps = null);

/// <summary>Mean and standard error (sample std / √n; 0 for one value) over training seeds.</summary>
public sealed record MeanSe(double Mean, double StandardError)
{
    public static MeanSe Of(IReadOnlyList<double> v)
    {
        var (m, se) = Statistics.MeanStandardError(v.Where(double.IsFinite).ToArray());
        return new MeanSe(m, se);
    }

    public override string ToString() => double.IsFinite(Mean)
        ? string.Create(CultureInfo.InvariantCulture, $"{100 * Mean:F2} ± {100 * StandardError:F2}")
        : "n/a";
}

/// <summary>Summary of one setting over seeds: test accuracy, worst-group test accuracy (min over the
/// groups present in the test set, per seed, then mean ± s.e.) and accuracy per group.</summary>
public sealed record CurationSummary(CurationSetting Setting, MeanSe Accuracy, MeanSe WorstGroupAccuracy, MeanSe[] GroupAccuracy)
{
    /// <summary>Test accuracy per seed (in the order of the run's seeds), for comparisons paired by seed.</summary>
    public double[] AccuracyPerSeed { get; init; } = Array.Empty<double>();
    /// <summary>Worst-group test accuracy per seed.</summary>
    public double[] WorstGroupAccuracyPerSeed { get; init; } = Array.Empty<double>();
}

/// <summary>
/// Retrains a model on each curated training set with each seed and records which test examples it
/// gets right. Each (setting, seed) result is one JSON file, written atomically, named by the setting
/// and seed and holding the hash of the removed set; running again trains only the missing ones (a
/// file that is unreadable or made for another removed set is retrained), so an interrupted run
/// resumes, and n processes with shards 0/n..n−1/n share the work (item p = setting · seeds + seed).
/// </summary>
public sealed class CurationRun
{
    private const string ManifestFile = "curate.json";
    private readonly ModelSpec model;
    private readonly TrainOptions training;
    private readonly LabeledDataset train, test;

    /// <summary>Opens (or creates) the cache; <c>budget</c> (how long each retraining trains, see
    /// <see cref="RetrainBudgets"/>) is part of every result's file name and record, so results of the
    /// other budget are never taken for these.</summary>
    public CurationRun(string cacheDir, ModelSpec model, TrainOptions training, LabeledDataset train, LabeledDataset test,
        IReadOnlyList<CurationSetting> settings, int[] seeds, RetrainBudget budget = RetrainBudget.Epochs)
    {
        if (seeds.Length == 0) throw new InfluenceSharpException("curation: no training seeds");
        var names = settings.Select(s => s.Name).ToList();
        if (names.Distinct().Count() != names.Count) throw new InfluenceSharpException("curation: setting names repeat");
        foreach (var s in settings)
            foreach (var i in s.Removed)
                if (i < 0 || i >= train.Count) throw new InfluenceSharpException($"curation {s.Name}: index {i} is outside the training set (0..{train.Count - 1})");
        foreach (var s in settings)
            foreach (var i in s.Duplicated ?? Array.Empty<int>())
                if (i < 0 || i >= train.Count) throw new InfluenceSharpException($"curation {s.Name}: duplicated index {i} is outside the training set (0..{train.Count - 1})");
        foreach (var s in settings)
            foreach (var (i, label) in s.Relabeled ?? Array.Empty<(int, int)>())
                if (i < 0 || i >= train.Count || label < 0 || label >= train.NumClasses)
                    throw new InfluenceSharpException($"curation {s.Name}: relabel of example {i} to class {label} is outside the training set (0..{train.Count - 1}) or its classes (0..{train.NumClasses - 1})");
        if (seeds.GroupBy(x => x).FirstOrDefault(g => g.Count() > 1) is { } twice)
            throw new InfluenceSharpException($"--seeds: seed {twice.Key} is given {twice.Count()} times (one retraining would count as several); give each seed once");
        Budget = budget;
        CacheDir = cacheDir; this.model = model; this.training = training; this.train = train; this.test = test;
        Settings = settings; Seeds = seeds;
        var manifest = new CurationManifest
        {
            Model = model, Training = training, DataFingerprint = train.Fingerprint(), TrainCount = train.Count,
            TestFingerprint = test.Fingerprint(), TestCount = test.Count,
        };
        Directory.CreateDirectory(cacheDir);
        OutputLock.CleanStaleTemps(cacheDir);
        string path = Path.Combine(cacheDir, ManifestFile);
        using (OutputLock.Manifest(cacheDir, "curation cache"))
        {
            if (File.Exists(path)) ManifestCheck.RequireSame(path, manifest, "library_version");
            else Json.WriteFile(path, manifest);
        }
    }

    public string CacheDir { get; }
    public IReadOnlyList<CurationSetting> Settings { get; }
    public int[] Seeds { get; }
    public RetrainBudget Budget { get; }

    /// <summary>The result file: NAME-seedS.json under the epochs budget (the name caches had before
    /// budgets existed), NAME-seedS-steps.json under the steps budget.</summary>
    public string ResultPath(int setting, int seedIndex) =>
        Path.Combine(CacheDir, $"{Settings[setting].Name}-seed{Seeds[seedIndex]}{(Budget == RetrainBudget.Steps ? "-steps" : "")}.json");

    /// <summary>The valid cached result, or null when missing, unreadable or made for another set.</summary>
    public CurationOutcome? TryLoad(int setting, int seedIndex)
    {
        string path = ResultPath(setting, seedIndex);
        if (!File.Exists(path)) return null;
        CurationOutcome o;
        try { o = Json.ReadFile<CurationOutcome>(path); }
        catch (Exception e) when (e is InfluenceSharpException or System.Text.Json.JsonException or IOException) { return null; }
        var s = Settings[setting];
        if (o is null || o.Setting != s.Name || o.Seed != Seeds[seedIndex] || o.RemovedHash != s.RemovedHash()
            || (o.Budget ?? "epochs") != RetrainBudgets.Name(Budget)
            || o.Correct is null || o.Correct.Length != test.Count || o.Correct.Any(c => c is not ('0' or '1'))) return null;
        return o;
    }

    /// <summary>Items (setting, seed index) of this shard without a valid result.</summary>
    public (int Setting, int SeedIndex)[] Pending(Shard? shard = null)
    {
        var sh = shard ?? Shard.All;
        var list = new List<(int, int)>();
        for (int s = 0; s < Settings.Count; s++)
            for (int r = 0; r < Seeds.Length; r++)
                if (sh.Contains(s * Seeds.Length + r) && TryLoad(s, r) is null) list.Add((s, r));
        return list.ToArray();
    }

    /// <summary>Trains this shard's pending items; returns how many it trained. Cancelling stops between models.</summary>
    public int Run(Shard? shard = null, Action<string>? log = null, CancellationToken cancel = default)
    {
        using var stage = OutputLock.Stage(CacheDir, "curation retraining", shard ?? Shard.All);
        int done = 0;
        foreach (var (s, r) in Pending(shard))
        {
            if (cancel.IsCancellationRequested) break;
            using var itemLock = OutputLock.Partition(CacheDir, "curation retraining", s * Seeds.Length + r);
            if (TryLoad(s, r) is not null) continue;   // another shard trained it meanwhile
            var sw = Stopwatch.StartNew();
            var setting = Settings[s];
            bool unchanged = setting.Removed.Length == 0 && setting.Duplicated is not { Length: > 0 } && setting.Relabeled is not { Length: > 0 };
            var source = train;
            if (setting.Relabeled is { Length: > 0 } rel)
            {
                var labels = (int[])train.Labels.Clone();
                foreach (var (i, label) in rel) labels[i] = label;
                source = train.WithLabels(labels, $"{train.Name}[relabelled]");
            }
            var data = unchanged ? train : source.Subset(setting.Indices(train.Count), $"{train.Name}[{setting.Name}]");
            var options = RetrainBudgets.For(training, train.Count, Budget) with { Seed = Seeds[r] };
            var result = new Trainer(options).Train(model, data, null, null);
            using var m = result.Model;
            var correct = Measurements.Of(m, test).Correct;
            var outcome = new CurationOutcome(setting.Name, Seeds[r], setting.RemovedHash(), data.Count,
                new string(correct.Select(c => c ? '1' : '0').ToArray()), RetrainBudgets.Name(Budget), result.Steps);
            Json.WriteFile(ResultPath(s, r), outcome);
            done++;
            log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                $"curate: {setting.Name} seed {Seeds[r]} ({data.Count} examples, {result.Steps} steps): test accuracy {correct.Count(c => c) / (double)correct.Length:P2} ({sw.Elapsed.TotalSeconds:F1}s)"));
        }
        return done;
    }

    /// <summary>Per-setting summaries from the cached results; throws, naming them, if some are missing.</summary>
    public IReadOnlyList<CurationSummary> Summarize(int[] testGroups, int numGroups)
    {
        if (testGroups.Length != test.Count) throw new InfluenceSharpException($"curation: {testGroups.Length} test group labels for {test.Count} test examples");
        var missing = Pending();
        if (missing.Length > 0)
            throw new InfluenceSharpException($"{CacheDir}: {missing.Length} retrainings are not done yet (first: {Settings[missing[0].Setting].Name} seed {Seeds[missing[0].SeedIndex]}); run it (again) to finish");
        var result = new List<CurationSummary>();
        for (int s = 0; s < Settings.Count; s++)
        {
            var acc = new double[Seeds.Length];
            var worst = new double[Seeds.Length];
            var perGroup = new double[numGroups][];
            for (int g = 0; g < numGroups; g++) perGroup[g] = new double[Seeds.Length];
            for (int r = 0; r < Seeds.Length; r++)
            {
                var c = TryLoad(s, r)!.Correct;
                var (a, groups) = Accuracies(c, testGroups, numGroups);
                acc[r] = a;
                worst[r] = groups.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Min();
                for (int g = 0; g < numGroups; g++) perGroup[g][r] = groups[g];
            }
            result.Add(new CurationSummary(Settings[s], MeanSe.Of(acc), MeanSe.Of(worst), perGroup.Select(MeanSe.Of).ToArray())
            {
                AccuracyPerSeed = acc, WorstGroupAccuracyPerSeed = worst,
            });
        }
        return result;
    }

    /// <summary>Overall accuracy and accuracy per group (NaN for a group with no test example) from a '0'/'1' string.</summary>
    public static (double Accuracy, double[] Groups) Accuracies(string correct, int[] groups, int numGroups)
    {
        var right = new int[numGroups];
        var total = new int[numGroups];
        int all = 0;
        for (int i = 0; i < correct.Length; i++)
        {
            bool ok = correct[i] == '1';
            if (ok) all++;
            total[groups[i]]++;
            if (ok) right[groups[i]]++;
        }
        return (all / (double)correct.Length, Enumerable.Range(0, numGroups).Select(g => total[g] == 0 ? double.NaN : right[g] / (double)total[g]).ToArray());
    }

    /// <summary>Group balancing by subsampling (the standard baseline when training groups are known):
    /// every non-empty training group keeps a seeded random subset of the smallest non-empty group's size.
    /// Returns the removed indices (ascending).</summary>
    public static int[] BalanceRemoved(int[] trainGroups, int numGroups, int seed)
    {
        var members = Enumerable.Range(0, numGroups).Select(g => new List<int>()).ToArray();
        for (int i = 0; i < trainGroups.Length; i++) members[trainGroups[i]].Add(i);
        int size = members.Where(m => m.Count > 0).Min(m => m.Count);
        var rng = new Random(InfluenceSharp.Seeds.Derive(seed, -1));
        var removed = new List<int>();
        foreach (var m in members)
        {
            var arr = m.ToArray();
            for (int i = arr.Length - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (arr[i], arr[j]) = (arr[j], arr[i]);
            }
            removed.AddRange(arr.Skip(size));
        }
        removed.Sort();
        return removed.ToArray();
    }

    /// <summary>Group balancing by upsampling: every non-empty training group is brought up to the
    /// largest group's size by adding seeded random duplicates of its members (each member is
    /// duplicated ⌊need / size⌋ times, then a random subset of them once more). Returns the added
    /// indices (ascending; an index repeats when it is duplicated more than once).</summary>
    public static int[] UpsampleAdded(int[] trainGroups, int numGroups, int seed)
    {
        var members = Enumerable.Range(0, numGroups).Select(g => new List<int>()).ToArray();
        for (int i = 0; i < trainGroups.Length; i++) members[trainGroups[i]].Add(i);
        int size = members.Max(m => m.Count);
        var rng = new Random(InfluenceSharp.Seeds.Derive(seed, -2));
        var added = new List<int>();
        foreach (var m in members)
        {
            if (m.Count == 0) continue;
            int need = size - m.Count;
            for (int rep = 0; rep < need / m.Count; rep++) added.AddRange(m);
            var arr = m.ToArray();
            for (int i = arr.Length - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (arr[i], arr[j]) = (arr[j], arr[i]);
            }
            added.AddRange(arr.Take(need % m.Count));
        }
        added.Sort();
        return added.ToArray();
    }

    /// <summary>A markdown table of the summaries: setting, removed, accuracy, worst-group accuracy (percent, mean ± s.e.).</summary>
    public static string Table(IReadOnlyList<CurationSummary> rows, int seeds)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"| setting | removed | added | test accuracy % | worst-group accuracy % |");
        sb.AppendLine("|---|---:|---:|---:|---:|");
        foreach (var r in rows)
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.Setting.Name} | {r.Setting.K} | {r.Setting.Duplicated?.Length ?? 0} | {r.Accuracy} | {r.WorstGroupAccuracy} |");
        sb.AppendLine(CultureInfo.InvariantCulture, $"\nmean ± standard error over {seeds} training seed(s).");
        return sb.ToString();
    }

    /// <summary>A markdown table of accuracy per group (percent, mean ± s.e.), one row per setting.</summary>
    public static string GroupTable(IReadOnlyList<CurationSummary> rows, IReadOnlyList<string> groupNames)
    {
        var sb = new StringBuilder("| setting | " + string.Join(" | ", groupNames) + " |\n");
        sb.Append("|---|").Append(string.Concat(Enumerable.Repeat("---:|", groupNames.Count))).Append('\n');
        foreach (var r in rows)
            sb.Append("| ").Append(r.Setting.Name).Append(" | ").Append(string.Join(" | ", r.GroupAccuracy.Select(a => a.ToString()))).Append(" |\n");
        return sb.ToString();
    }
}
