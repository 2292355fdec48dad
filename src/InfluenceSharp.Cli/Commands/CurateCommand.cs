using System.CommandLine;
using System.Globalization;
using System.Text;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Reporting;
using InfluenceSharp.Runs;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence curate`: data curation by attribution (D3M): score every training example's
/// effect on a validation objective, remove the most detrimental k, retrain over seeds, and compare
/// test and worst-group accuracy with random removal, self-influence removal, removing the most
/// helpful, and group balancing.</summary>
public static class CurateCommand
{
    public const string ResultFile = RunReport.CurationResultFile;

    public static Command Command()
    {
        var run = Opt.Run();
        var validation = Opt.Str("--validation", "the validation set: test:N (the first N test examples; the rest are the test set) or test:F (a fraction 0<F<1 of them)", "SPEC", required: true);
        var groups = Opt.Str("--groups", "group labels: a file with one integer id per line (one per test example, or per training example then per test example), or columns: class, tint (tinted data), class*tint", "FILE|COLUMNS");
        var objective = Opt.Str("--objective", "validation objective: mean (mean loss), worst-group, d3m (group losses weighted by their excess over the average group), d3m-positive (d3m with the weights of below-average groups set to 0), group:G", "OBJ", fallback: "mean");
        var methods = Opt.Methods(MethodFactory.Defaults(MethodRole.Attribution), MethodFactory.Names, single: false, "the methods whose validation attribution ranks the training examples");
        var remove = Opt.Str("--remove", "how many detrimental examples to remove: counts (50,100) or fractions of the training set (0.01,0.05)", "K,...", fallback: "0.01,0.02,0.05");
        var seeds = Opt.IntList("--seeds", "retraining seeds (each setting is retrained once per seed), as in evaluate remove", new[] { 0, 1, 2 }, 0, distinct: true);
        var budget = RetrainBudgetOption.Create("steps");
        var epochs = Opt.OptionalInt("--epochs", "epochs of each retraining [default: the run's]", 1, 100000);
        var outDir = Opt.Out("rankings, curation.json, curation.md, curation.png and the retraining cache (retrain/) [default: RUN_DIR/curate]");
        var shard = Opt.Shard("retrain only items p (setting x seed) with p % n == i, then stop; run again without --shard to report");
        var decisions = Opt.Str("--decisions", "a reviewer's decisions (RUN_DIR/decisions.csv as `influence serve` saves it: index,source,decision[,label]): " +
            "the 'remove' examples left out and the 'relabel' ones trained with their new label form one more setting, 'decisions', retrained beside the methods' removals and the baselines; " +
            "'keep' examples are never removed by the methods' or the baselines' sets", "FILE");
        var ms = new MethodSettingOptions(measure: false);
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("curate", "data curation by attribution (D3M): rank training examples by their predicted effect on a validation objective, " +
            "remove the most detrimental k, retrain over seeds (cached, resumable, shardable), compare test and worst-group accuracy with baselines")
        {
            run, validation, groups, objective, methods, remove, seeds, budget, epochs, outDir, shard, decisions,
        };
        CommandSupport.AddRunMethodAction(cmd, run, methods, ms, data, compute, (p, runDir, quiet) =>
        {
            var (obj, group) = ParseObjective(p.GetValue(objective)!);
            var profiler = new Profiler();
            var rc = profiler.Time("Load Data", () => RunContext.Load(runDir, p.GetValue(data)));
            string dir = p.GetValue(outDir) ?? Path.Combine(runDir, "curate");
            var settings = ms.Read(p) with { Measure = QueryMeasurement.Loss };
            var chosen = GroupObjectiveMethods(obj, p.GetValue(objective)!, p.GetValue(methods)!, p.GetResult(methods) is { Implicit: false }, quiet);
            var o = new CurateRequest(p.GetValue(validation)!, p.GetValue(groups), obj, group, p.GetValue(objective)!, chosen,
                p.GetValue(remove)!, RequireDistinct(p.GetValue(seeds)!), p.GetValue(epochs), dir, p.GetValue(shard))
            {
                Budget = RetrainBudgets.Parse(p.GetValue(budget)!),
                Decisions = p.GetValue(decisions),
            };
            int rcode = Run(rc, o, settings, profiler, quiet);
            if (!quiet) Console.Error.Write(profiler.Table());
            return rcode;
        });
        return cmd;
    }

    /// <summary>The methods a group objective ranks with: without --methods, the registry's default for
    /// group curation instead of the mean objective's; a warning for a method known to rank such
    /// objectives the wrong way.</summary>
    internal static string[] GroupObjectiveMethods(CurationObjective obj, string objectiveText, string[] methods, bool given, bool quiet)
    {
        if (obj == CurationObjective.Mean) return methods;
        if (!given)
        {
            var chosen = MethodFactory.Defaults(MethodRole.GroupCuration).Split(',');
            if (!quiet) Console.Error.WriteLine($"curate: --objective {objectiveText} ranks with {string.Join(",", chosen)} (the mean objective's default, {string.Join(",", methods)}, ranks group objectives the wrong way on the tinted benchmark); give --methods to choose");
            return chosen;
        }
        foreach (var m in methods)
            if (AttributionMethods.Find(m)?.GroupObjectiveWarning is { } why)
                Console.Error.WriteLine($"curate: warning: {m} is known to rank group objectives such as {objectiveText} the wrong way ({why})");
        return methods;
    }

    internal sealed record CurateRequest(string Validation, string? Groups, CurationObjective Objective, int Group, string ObjectiveText,
        string[] Methods, string Remove, int[] Seeds, int? Epochs, string OutDir, Shard Shard)
    {
        /// <summary>How long each retraining trains (default: the full run's step count).</summary>
        public RetrainBudget Budget { get; init; } = RetrainBudget.Steps;
        /// <summary>A decisions file (index,source,decision[,label]) or null.</summary>
        public string? Decisions { get; init; }
    }

    /// <summary>What a decisions file asks of a curation: the reviewer's own setting (null when it
    /// removes and relabels nothing) and the examples no other setting may remove.</summary>
    internal static (CurationSetting? Setting, int[] Keep, string Summary) ReadDecisions(string file, LabeledDataset train)
    {
        if (!File.Exists(file)) throw new UsageException($"--decisions {file}: no such file");
        var items = CleanCommand.ReadDecisions(file, train);
        var removed = items.Where(d => d.Decision == CleanDecision.Remove).Select(d => d.Index).Order().ToArray();
        var relabeled = items.Where(d => d.Decision == CleanDecision.Relabel && d.NewLabel != train.Labels[d.Index])
            .Select(d => (d.Index, d.NewLabel!.Value)).OrderBy(r => r.Index).ToArray();
        var keep = items.Where(d => d.Decision == CleanDecision.Keep).Select(d => d.Index).Order().ToArray();
        if (removed.Length >= train.Count) throw new UsageException($"--decisions {file}: removes all {train.Count} training examples");
        string summary = $"decisions from {file}: {removed.Length} removed, {relabeled.Length} relabelled, {keep.Length} kept";
        var setting = removed.Length + relabeled.Length == 0 ? null
            : new CurationSetting("decisions", "decisions", null, removed.Length, removed) { Relabeled = relabeled };
        return (setting, keep, summary);
    }

    static int[] RequireDistinct(int[] seeds)
    {
        if (seeds.Distinct().Count() != seeds.Length) throw new UsageException($"--seeds {string.Join(",", seeds)}: a seed repeats");
        return seeds;
    }

    static (CurationObjective, int) ParseObjective(string s)
    {
        try { return ValidationAttribution.ParseObjective(s); }
        catch (InfluenceSharpException e) { throw new UsageException($"--objective {e.Message}"); }
    }

    /// <summary>"test:N" or "test:F": the number of leading test examples that form the validation set.</summary>
    internal static int ParseValidation(string spec, int testCount)
    {
        if (!spec.StartsWith("test:", StringComparison.Ordinal))
            throw new UsageException($"--validation {spec}: expected test:N (the first N test examples) or test:F (a fraction of them)");
        string v = spec[5..];
        int n;
        if (int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int k)) n = k;
        else if (double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && f > 0 && f < 1) n = (int)Math.Round(f * testCount);
        else throw new UsageException($"--validation {spec}: '{v}' is not a count or a fraction between 0 and 1");
        if (n < 1 || n >= testCount)
            throw new UsageException($"--validation {spec}: {n} validation examples must leave a test set (the run has {testCount} test examples)");
        return n;
    }

    /// <summary>"50,100" or "0.01,0.05": removal counts, ascending and distinct, each in [1, n).</summary>
    internal static int[] ParseRemove(string spec, int trainCount)
    {
        var ks = new List<int>();
        foreach (var t in spec.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            int k;
            if (int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out int c)) k = c;
            else if (double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && f > 0 && f < 1) k = Math.Max(1, (int)Math.Round(f * trainCount));
            else throw new UsageException($"--remove {spec}: '{t}' is not a count or a fraction between 0 and 1");
            if (k < 1 || k >= trainCount) throw new UsageException($"--remove {spec}: {k} must be between 1 and {trainCount - 1} ({trainCount} training examples)");
            ks.Add(k);
        }
        if (ks.Count == 0) throw new UsageException($"--remove {spec}: no counts");
        return ks.Distinct().Order().ToArray();
    }

    internal static int Run(Run rc, CurateRequest o, MethodSettings settings, Profiler profiler, bool quiet)
    {
        var train = rc.Data.Train;
        var fullTest = rc.Data.Test;
        // Every input is checked before any scoring or training.
        int nVal = ParseValidation(o.Validation, fullTest.Count);
        var ks = ParseRemove(o.Remove, train.Count);
        var (decided, keep, decisionsSummary) = o.Decisions is { } df ? ReadDecisions(df, train) : (null, Array.Empty<int>(), "");
        if (keep.Length > 0 && ks.Max() > train.Count - keep.Length - 1)
            throw new UsageException($"--remove {o.Remove}: {ks.Max()} removals leave too few of the {train.Count - keep.Length} training examples not marked keep in {o.Decisions}");
        GroupLabels? g = null;
        if (o.Groups is { } gs)
        {
            try { g = GroupLabels.Resolve(gs, train, fullTest); }
            catch (InfluenceSharpException e) { throw new UsageException(e.Message); }
        }
        if (g is null && o.Objective != CurationObjective.Mean)
            throw new UsageException($"--objective {o.ObjectiveText}: needs validation group labels (--groups FILE or columns)");
        var valIdx = Enumerable.Range(0, nVal).ToArray();
        var testIdx = Enumerable.Range(nVal, fullTest.Count - nVal).ToArray();
        var val = fullTest.Subset(valIdx, "curate-validation");
        var test = fullTest.Subset(testIdx, "curate-test");
        int numGroups = g?.NumGroups ?? 1;
        var valGroups = g is null ? new int[nVal] : valIdx.Select(i => g.Test[i]).ToArray();
        var testGroups = g is null ? new int[test.Count] : testIdx.Select(i => g.Test[i]).ToArray();
        if (g is not null)
        {
            try { ValidationAttribution.RequireAllGroups(valGroups, numGroups, $"--groups {o.Groups} with --validation {o.Validation}"); }
            catch (InfluenceSharpException e) { throw new UsageException(e.Message); }
            if (o.Objective == CurationObjective.Group && (o.Group < 0 || o.Group >= numGroups))
                throw new UsageException($"--objective {o.ObjectiveText}: group {o.Group} is outside [0, {numGroups})");
        }
        var training = rc.Last.Info.Training ?? new TrainOptions();
        if (o.Epochs is { } e2) training = training with { Epochs = e2 };
        OutputDirectory.Create(o.OutDir);

        // 1. Validation attribution per method.
        double[] losses;
        using (var model = rc.Last.LoadModel())
            losses = Measurements.Of(model, val).Loss;
        var weights = ValidationAttribution.Weights(o.Objective, nVal, g is null ? null : valGroups, numGroups, losses, o.Group);
        var scores = new Dictionary<string, double[]>();
        foreach (var m in o.Methods)
        {
            var method = MethodFactory.Create(m, rc, settings, profiler, quiet);
            using (profiler.Stage($"Validation Scores ({m})"))
                scores[m] = ValidationAttribution.Scores(method, val, train, weights);
            MethodLifetime.Release(method);
            WriteRanking(Path.Combine(o.OutDir, $"ranking-{m}.csv"), scores[m], train, g?.Train);
        }
        double[] self;
        using (profiler.Stage($"Self-Influence ({o.Methods[0]})"))
            self = MethodFactory.Create(o.Methods[0], rc, settings, profiler, quiet).SelfInfluence(train);

        // 2. The settings: none, per k the detrimental/helpful sets of every method, and the baselines.
        var list = CurationSettings.With(ks, o.Methods, scores, self, train.Count, rc.Data.Corruption, g?.Train, numGroups, keep);
        if (decided is not null) list.Insert(1, decided);
        if (!quiet && o.Decisions is not null) Console.Error.WriteLine($"curate: {decisionsSummary}" + (decided is null ? " (nothing to retrain beyond keeping them)" : " (setting 'decisions')"));

        // 3. Retraining (cached per setting and seed).
        var cr = new CurationRun(Path.Combine(o.OutDir, "retrain"), rc.Last.Info.Model, training, train, test, list, o.Seeds, o.Budget);
        using (profiler.Stage("Retrain Curated Sets"))
            cr.Run(o.Shard, quiet ? null : msg => Console.Error.WriteLine(msg));
        int pending = cr.Pending().Length;
        if (pending > 0)
        {
            Console.WriteLine($"shard {o.Shard} done; {pending} retrainings still to do by other shards");
            return 0;
        }
        var rows = cr.Summarize(testGroups, numGroups);

        // 4. Outputs: table, JSON, plot.
        var table = CurationRun.Table(rows, o.Seeds.Length);
        string head = $"curation ({o.ObjectiveText} objective, {nVal} validation and {test.Count} test examples, {train.Count} training examples, " +
            $"{numGroups} group(s){(g is null ? "" : $" from {o.Groups}")}, seeds {string.Join(",", o.Seeds)}, retrain budget: {RetrainBudgets.Name(o.Budget)}" +
            (o.Budget == RetrainBudget.Steps && training.LbfgsTolerance is null ? $" = {RetrainBudgets.For(training, train.Count, o.Budget).TotalSteps} steps" : "") +
            (o.Decisions is null ? "" : $"; {decisionsSummary}") + ")";
        Console.WriteLine(head);
        Console.Write(table);
        string groupTable = g is null ? "" : "\nTest accuracy per group (%):\n\n" + CurationRun.GroupTable(rows, g.Names);
        AtomicFile.WriteAllText(Path.Combine(o.OutDir, "curation.md"), head + "\n\n" + table + groupTable);
        Json.WriteFile(Path.Combine(o.OutDir, ResultFile), new CurationReport(o.ObjectiveText, o.Methods, nVal, test.Count, train.Count, o.Groups,
            g?.Names.ToArray() ?? new[] { "all" }, o.Seeds,
            rows.Select(r => new CurationRow(r.Setting.Name, r.Setting.Kind, r.Setting.Method, r.Setting.K, r.Accuracy.Mean, r.Accuracy.StandardError,
                r.WorstGroupAccuracy.Mean, r.WorstGroupAccuracy.StandardError,
                r.GroupAccuracy.Select(a => a.Mean).ToArray(), r.GroupAccuracy.Select(a => a.StandardError).ToArray())
            {
                Added = r.Setting.Duplicated?.Length ?? 0, Relabeled = r.Setting.Relabeled?.Length ?? 0, AccuracyPerSeed = r.AccuracyPerSeed, WorstGroupAccuracyPerSeed = r.WorstGroupAccuracyPerSeed,
            }).ToList()));
        Plot(rows, ks, o.Methods).SavePng(Path.Combine(o.OutDir, "curation.png"));
        AtomicFile.WriteAllText(Path.Combine(o.OutDir, "profile-curate.txt"), profiler.Table());
        return 0;
    }

    public sealed record CurationRow(string Setting, string Kind, string? Method, int K, double Accuracy, double AccuracySe,
        double WorstGroupAccuracy, double WorstGroupAccuracySe, double[] GroupAccuracy, double[] GroupAccuracySe)
    {
        /// <summary>Training examples added (balance-upsample's duplicates).</summary>
        public int Added { get; init; }
        /// <summary>Training examples trained with another label (the reviewer's decisions).</summary>
        public int Relabeled { get; init; }
        /// <summary>Per seed, in the order of the report's seeds (for comparisons paired by seed).</summary>
        public double[]? AccuracyPerSeed { get; init; }
        public double[]? WorstGroupAccuracyPerSeed { get; init; }
    }

    public sealed record CurationReport(string Objective, string[] Methods, int Validation, int Test, int Train, string? Groups, string[] GroupNames,
        int[] Seeds, List<CurationRow> Rows);

    static void WriteRanking(string path, double[] scores, LabeledDataset train, int[]? groups)
    {
        var labels = train.Labels;
        var sb = new StringBuilder("rank,index,score,label,group,source\n");
        var order = ValidationAttribution.MostDetrimental(scores);
        for (int r = 0; r < order.Length; r++)
        {
            int i = order[r];
            sb.Append(CultureInfo.InvariantCulture, $"{r + 1},{i},{scores[i]:R},{labels[i]},{(groups is null ? "" : groups[i].ToString(CultureInfo.InvariantCulture))},{SourceText.Csv(SourceText.Of(train, i))}\n");
        }
        AtomicFile.WriteAllText(path, sb.ToString());
    }

    /// <summary>Test accuracy (solid) and worst-group accuracy (dashed) against k, per removal kind.</summary>
    static LinePlot Plot(IReadOnlyList<CurationSummary> rows, int[] ks, string[] methods)
    {
        var plot = new LinePlot { Title = "Curation: accuracy after removing k training examples", XLabel = "examples removed (k)", YLabel = "test accuracy (solid) / worst-group (dashed)" };
        var none = rows.First(r => r.Setting.Kind == "none");
        var kinds = methods.SelectMany(m => new (string, string?)[] { ("detrimental", m), ("helpful", m) }).Append(("random", (string?)null)).Append(("self-influence", (string?)methods[0])).ToList();
        int ci = 0;
        foreach (var (kind, m) in kinds)
        {
            var series = rows.Where(r => r.Setting.Kind == kind && r.Setting.Method == m).OrderBy(r => r.Setting.K).ToList();
            var x = series.Select(r => (double)r.Setting.K).Prepend(0).ToArray();
            var color = Rgb.Palette(ci++);
            string name = m is null ? kind : $"{kind} ({m})";
            plot.Add(name, x, series.Select(r => r.Accuracy.Mean).Prepend(none.Accuracy.Mean).ToArray(), color, markers: true);
            plot.Add(name + " worst-group", x, series.Select(r => r.WorstGroupAccuracy.Mean).Prepend(none.WorstGroupAccuracy.Mean).ToArray(), color, dashed: true, markers: true);
        }
        if (rows.FirstOrDefault(r => r.Setting.Kind == "decisions") is { } d)
        {
            // The reviewer's one set: a horizontal reference line (its size is in the table).
            double[] span = { 0, ks.Max() };
            plot.Add($"decisions ({d.Setting.K} removed)", span, new[] { d.Accuracy.Mean, d.Accuracy.Mean }, Rgb.Palette(ci++), markers: false);
        }
        if (rows.FirstOrDefault(r => r.Setting.Kind == "balance") is { } b)
        {
            // Balancing removes far more than k: drawn as horizontal reference lines (its count is in the table).
            double[] span = { 0, ks.Max() };
            plot.Add("balance (all k)", span, new[] { b.Accuracy.Mean, b.Accuracy.Mean }, Rgb.Gray, markers: false);
            plot.Add("balance worst-group", span, new[] { b.WorstGroupAccuracy.Mean, b.WorstGroupAccuracy.Mean }, Rgb.Gray, dashed: true);
        }
        return plot;
    }
}
