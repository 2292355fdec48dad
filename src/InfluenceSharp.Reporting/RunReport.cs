using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Training;

namespace InfluenceSharp.Reporting;

/// <summary>The report of a run: one self-contained HTML page from whatever the commands left in the
/// run directory (training, detect/, explain/, lds/, remove/, curate/).</summary>
public static class RunReport
{
    /// <summary>The page's sections, in order.</summary>
    public static readonly string[] SectionTitles =
        { "Run", "Training", "Mislabel detection", "Proponents and opponents", "Linear datamodeling score", "Counterfactual removal", "Data curation", "Timings" };

    /// <summary>The results file of a curation, in its output folder.</summary>
    public const string CurationResultFile = "curation.json";

    /// <summary>Writes the page for <paramref name="runDir"/> to <paramref name="outPath"/>: the run
    /// and its training from the checkpoints, then each section from what the command that owns it left
    /// in its default folder (detect/, explain/, lds/, remove/, curate/), or a line naming that command.
    /// A malformed results file is an error naming the file and the command that rewrites it.</summary>
    public static void Write(string runDir, string outPath)
    {
        var checkpoints = Checkpoint.List(runDir);
        var last = checkpoints[^1].Info;
        var report = new HtmlReport($"InfluenceSharp report: {Path.GetFileName(Path.GetFullPath(runDir).TrimEnd('/'))}");

        var run = report.Section("Run");
        // The corruption row only for a run that corrupted labels (otherwise there is nothing to say).
        bool corrupted = last.CorruptionFile is not null;
        run.Table(new[] { "setting", "value" }, new List<IReadOnlyList<object?>?>
        {
            new object?[] { "model", last.Model.Describe() },
            new object?[] { "data", $"{last.DataSource} ({last.TrainCount} training examples, fingerprint {last.DataFingerprint})" },
            corrupted ? new object?[] { "corrupted labels", last.CorruptedCount } : null,
            new object?[] { "epochs", checkpoints.Count },
            new object?[] { "training", last.Training is { } t ? $"SGD lr {t.LearningRate} ({t.Schedule}), momentum {t.Momentum}, weight decay {t.WeightDecay}, batch {t.BatchSize}, seed {t.Seed}" : "" },
            new object?[] { "final test accuracy", last.Metrics?.TestAccuracy },
            new object?[] { "library", "InfluenceSharp " + LibraryInfo.Version },
        }.OfType<IReadOnlyList<object?>>().ToList());

        var training = report.Section("Training");
        var history = checkpoints.Where(c => c.Info.Metrics is not null).Select(c => c.Info.Metrics!).ToList();
        if (history.Count > 0)
        {
            training.Image(Figures.TrainingCurves(history), "training curves");
            training.Table(new[] { "epoch", "learning rate", "train loss", "train acc", "test loss", "test acc", "seconds" },
                checkpoints.Where(c => c.Info.Metrics is not null).Select(c => (IReadOnlyList<object?>)new object?[]
                {
                    c.Info.Epoch, c.Info.LearningRate, c.Info.Metrics!.TrainLoss, c.Info.Metrics.TrainAccuracy, c.Info.Metrics.TestLoss, c.Info.Metrics.TestAccuracy, c.Info.Metrics.Seconds,
                }));
        }

        var detect = report.Section("Mislabel detection");
        string detectDir = Path.Combine(runDir, "detect");
        if (File.Exists(Path.Combine(detectDir, "detection.json")))
        {
            var rows = ReadResults(Path.Combine(detectDir, "detection.json"), "influence detect-mislabeled", root =>
            {
                var rows = new List<IReadOnlyList<object?>>();
                foreach (var m in root.EnumerateArray())
                {
                    var found = m.TryGetProperty("found_at", out var f) && f.ValueKind == JsonValueKind.Object ? f : default;
                    string Pct(string key) => found.ValueKind == JsonValueKind.Object && found.TryGetProperty(key, out var v) ? $"{v.GetDouble():P1}" : "";
                    rows.Add(new object?[] { m.GetProperty("method").GetString(), Pct("5%"), Pct("10%"), Pct("20%"), Pct("30%"),
                        m.TryGetProperty("roc_auc", out var auc) && auc.ValueKind == JsonValueKind.Number ? auc.GetDouble() : null, m.GetProperty("seconds").GetDouble() });
                }
                return rows;
            });
            // Found-at columns and ROC AUC only where some method has them (a run with a corruption record).
            bool scored = rows.Any(r => r[1] is string { Length: > 0 } || r[5] is not null);
            if (scored)
            {
                detect.Paragraph("Training examples ranked by self-influence; the fraction of truly corrupted labels found when inspecting the top of the ranking.");
                detect.Table(new[] { "method", "5%", "10%", "20%", "30%", "ROC AUC", "seconds" }, rows);
            }
            else
            {
                detect.Paragraph("Training examples ranked by self-influence (the run has no record of corrupted labels, so the rankings are not scored): the most suspicious examples of each method are shown below.");
                detect.Table(new[] { "method", "seconds" }, rows.Select(r => (IReadOnlyList<object?>)new[] { r[0], r[6] }).ToList());
            }
            AddImages(detect, detectDir, "detection-curve*.png");
            AddImages(detect, detectDir, "self-influence-*.png");
            // Images: the grid and where its examples came from; texts (no grid): a table of the texts.
            var suspicious = Directory.GetFiles(detectDir, "suspicious-*.png").Concat(Directory.GetFiles(detectDir, "suspicious-*.csv"))
                .Select(f => Path.Combine(detectDir, Path.GetFileNameWithoutExtension(f))).Distinct().OrderBy(f => f, StringComparer.Ordinal);
            foreach (var stem in suspicious)
            {
                if (File.Exists(stem + ".png"))
                {
                    detect.Image(File.ReadAllBytes(stem + ".png"), Path.GetFileName(stem), Path.GetFileName(stem) + ".png");
                    AddSources(detect, stem + ".csv");
                }
                else AddSuspiciousTexts(detect, stem + ".csv");
            }
        }
        else detect.Paragraph("Not run (influence detect-mislabeled).");

        var explain = report.Section("Proponents and opponents");
        bool images = AddImages(explain, Path.Combine(runDir, "explain"), "explain-*.png");
        bool texts = false;
        if (Directory.Exists(Path.Combine(runDir, "explain")))
            foreach (var json in Directory.GetFiles(Path.Combine(runDir, "explain"), "explain-*.json").OrderBy(p => p, StringComparer.Ordinal))
                texts |= AddTextExplanations(explain, json);
        if (!images && !texts) explain.Paragraph("Not run (influence explain).");

        var lds = report.Section("Linear datamodeling score");
        string ldsFile = Path.Combine(runDir, "lds", "lds-results.json");
        if (File.Exists(ldsFile))
        {
            lds.Table(new[] { "method", "LDS", "standard error", "subsets", "queries", "target" },
                ReadResults(ldsFile, "influence evaluate lds", root => root.EnumerateArray().Select(m => (IReadOnlyList<object?>)new object?[]
                {
                    m.GetProperty("method").GetString(), m.GetProperty("lds").GetDouble(), m.GetProperty("standard_error").GetDouble(),
                    m.GetProperty("subsets").GetInt32(), m.GetProperty("queries").GetInt32(), m.GetProperty("target").GetString(),
                }).ToList()));
        }
        else lds.Paragraph("Not run (influence evaluate lds).");

        var remove = report.Section("Counterfactual removal");
        string removeFile = Path.Combine(runDir, "remove", "removal.json");
        if (File.Exists(removeFile))
        {
            string MS(JsonElement e) => $"{e.GetProperty("mean").GetDouble():F4} ± {e.GetProperty("std").GetDouble():F4}";
            var (method, rows) = ReadResults(removeFile, "influence evaluate remove", root => (root.GetProperty("method").GetString(),
                root.GetProperty("settings").EnumerateArray().Select(s => (IReadOnlyList<object?>)new object?[]
                {
                    s.GetProperty("kind").GetString(), s.GetProperty("k").GetInt32(), MS(s.GetProperty("query_loss_change")),
                    MS(s.GetProperty("query_accuracy_change")), MS(s.GetProperty("test_accuracy_change")),
                }).ToList()));
            remove.Paragraph($"Method {method}: change against training on all data with the same seeds.");
            remove.Table(new[] { "removed", "k", "query loss", "query accuracy", "test accuracy" }, rows);
            AddImages(remove, Path.Combine(runDir, "remove"), "removal.png");
        }
        else remove.Paragraph("Not run (influence evaluate remove).");

        var curate = report.Section("Data curation");
        string curateFile = Path.Combine(runDir, "curate", CurationResultFile);
        if (File.Exists(curateFile))
        {
            string Pct(JsonElement r, string m, string se) => r.GetProperty(m).ValueKind == JsonValueKind.Number
                ? $"{100 * r.GetProperty(m).GetDouble():F2} ± {100 * r.GetProperty(se).GetDouble():F2}" : "n/a";
            var (head, rows) = ReadResults(curateFile, "influence curate", root => (
                $"Objective {root.GetProperty("objective").GetString()}, {root.GetProperty("validation").GetInt32()} validation and " +
                $"{root.GetProperty("test").GetInt32()} test examples, {root.GetProperty("seeds").GetArrayLength()} retraining seed(s); " +
                "test and worst-group accuracy in percent, mean ± standard error over seeds.",
                root.GetProperty("rows").EnumerateArray().Select(r => (IReadOnlyList<object?>)new object?[]
                {
                    r.GetProperty("setting").GetString(), r.GetProperty("k").GetInt32(), Pct(r, "accuracy", "accuracy_se"),
                    Pct(r, "worst_group_accuracy", "worst_group_accuracy_se"),
                }).ToList()));
            curate.Paragraph(head);
            curate.Table(new[] { "setting", "removed", "test accuracy", "worst-group accuracy" }, rows);
            AddImages(curate, Path.Combine(runDir, "curate"), "curation.png");
        }
        else curate.Paragraph("Not run (influence curate).");

        var timings = report.Section("Timings");
        var profiles = Directory.GetFiles(runDir, "profile-*.txt", SearchOption.AllDirectories).OrderBy(p => p).ToList();
        foreach (var p in profiles) timings.Pre($"{Path.GetRelativePath(runDir, p)}\n{File.ReadAllText(p)}");
        if (profiles.Count == 0) timings.Paragraph("No profiler tables found.");
        report.Save(outPath);
    }

    /// <summary>Under a grid of suspicious examples: where each came from (the source column of
    /// suspicious-M.csv), for as many rows as the grid shows.</summary>
    static void AddSources(HtmlSection section, string csv, int shown = 24)
    {
        if (!File.Exists(csv)) return;
        var records = CsvDataReader.ReadRecords(csv);
        if (records.Count < 2) return;
        var header = records[0].Fields;
        int Col(string name) => Array.IndexOf(header, name);
        int src = Col("source"), index = Col("index"), given = Col("given_label"), predicted = Col("predicted_label");
        if (src < 0 || index < 0) return;
        var rows = records.Skip(1).Take(shown).Where(r => r.Fields.Length == header.Length).Select(r => (IReadOnlyList<object?>)new object?[]
        {
            r.Fields[0], r.Fields[index], given < 0 ? "" : r.Fields[given], predicted < 0 ? "" : r.Fields[predicted], r.Fields[src],
        }).ToList();
        if (rows.All(r => string.IsNullOrEmpty((string?)r[4]))) return;
        section.Table(new[] { "rank", "index", "given label", "predicted label", "source" }, rows, $"where the examples of {Path.GetFileNameWithoutExtension(csv)} came from");
    }

    /// <summary>The most suspicious texts of suspicious-M.csv (a run on text has no image grid): rank,
    /// labels, where each came from and its text.</summary>
    static void AddSuspiciousTexts(HtmlSection section, string csv, int shown = 24)
    {
        if (!File.Exists(csv)) return;
        var records = CsvDataReader.ReadRecords(csv);
        if (records.Count < 2) return;
        var header = records[0].Fields;
        int Col(string name) => Array.IndexOf(header, name);
        int text = Col("text");
        if (text < 0) { AddSources(section, csv, shown); return; }
        string Cell(string[] f, string name) => Col(name) is >= 0 and var c ? f[c] : "";
        var rows = records.Skip(1).Take(shown).Where(r => r.Fields.Length == header.Length).Select(r => (IReadOnlyList<object?>)new object?[]
        {
            Cell(r.Fields, "rank"), Cell(r.Fields, "given_label"), Cell(r.Fields, "predicted_label"), Cell(r.Fields, "true_label_if_corrupted"),
            Cell(r.Fields, "source"), new TextCell(r.Fields[text]),
        }).ToList();
        section.Table(new[] { "rank", "given label", "predicted label", "true label (if corrupted)", "source", "text" }, rows,
            $"most self-influential training texts ({Path.GetFileNameWithoutExtension(csv)["suspicious-".Length..]})");
    }

    /// <summary>Most queries, and proponents and opponents per query, a text explanation shows.</summary>
    public const int TextQueriesShown = 8, TextRowsShown = 6;

    /// <summary>Adds the explanations of explain-M.json when they are texts (a run on text): per query its
    /// text, then its top proponents and opponents as text, each token's background coloured by its
    /// per-token score where the method gave them (blue helps, red harms; one scale per query). Returns
    /// false, adding nothing, for explanations of images or tables (their grids show them).</summary>
    public static bool AddTextExplanations(HtmlSection section, string jsonPath)
    {
        string method = Path.GetFileNameWithoutExtension(jsonPath)["explain-".Length..];
        return ReadResults(jsonPath, "influence explain", root =>
        {
            if (root.ValueKind != JsonValueKind.Array || root.GetArrayLength() == 0) return false;
            static string? Content(JsonElement row) =>
                row.TryGetProperty("text", out var t) && t.ValueKind == JsonValueKind.String ? t.GetString()
                : row.TryGetProperty("source", out var s) && s.ValueKind == JsonValueKind.Object && s.TryGetProperty("kind", out var k) && k.GetString() == "text"
                    && s.TryGetProperty("text", out var st) ? st.GetString() : null;
            static string Where(JsonElement row)
            {
                if (!row.TryGetProperty("source", out var s) || s.ValueKind != JsonValueKind.Object) return "";
                if (s.TryGetProperty("documents", out var docs) && docs.ValueKind == JsonValueKind.Array)
                    return string.Join("; ", docs.EnumerateArray().Select(d => d.GetProperty("where").GetString()));
                return s.TryGetProperty("text", out var t) ? t.GetString() ?? "" : "";
            }
            var first = root[0];
            if (first.ValueKind != JsonValueKind.Object) return false;
            if (Content(first) is null && !(first.TryGetProperty("proponents", out var ps) && ps.ValueKind == JsonValueKind.Array
                && ps.EnumerateArray().Any(r => r.ValueKind == JsonValueKind.Object && Content(r) is not null)))
                return false;
            bool anyTokens = false;
            foreach (var q in root.EnumerateArray().Take(TextQueriesShown))
            {
                var rows = new[] { "proponents", "opponents" }.ToDictionary(k => k, k => q.GetProperty(k).EnumerateArray().Take(TextRowsShown).ToList());
                // One colour scale per query, so that its rows compare.
                double scale = rows.Values.SelectMany(r => r).SelectMany(r => r.TryGetProperty("tokens", out var t) ? t.EnumerateArray().Select(x => Math.Abs(x.GetProperty("score").GetDouble())) : Enumerable.Empty<double>())
                    .Where(double.IsFinite).DefaultIfEmpty(0).Max();
                string label = q.TryGetProperty("label", out var ql) && ql.ValueKind == JsonValueKind.String ? $" (label {ql.GetString()})" : "";
                section.ExampleHeading($"{method}, query {q.GetProperty("query").GetString()}{label}:");
                section.ExampleText(Content(q) ?? "");
                foreach (var (kind, list) in rows)
                {
                    section.ExampleHeading(list.Count == 0 ? $"no {kind}" : $"{kind}:");
                    foreach (var r in list)
                    {
                        string rl = r.TryGetProperty("label", out var l) && l.ValueKind == JsonValueKind.String ? $", label {l.GetString()}" : "";
                        string where = Where(r);
                        section.ExampleHeading(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                            $"#{r.GetProperty("index").GetInt32()}, score {r.GetProperty("score").GetDouble():G4}{rl}{(where.Length > 0 ? ", " + where : "")}"));
                        if (r.TryGetProperty("tokens", out var tokens) && tokens.ValueKind == JsonValueKind.Array)
                        {
                            anyTokens = true;
                            section.HighlightedText(tokens.EnumerateArray().Select(t => (t.GetProperty("token").GetString() ?? "", t.GetProperty("score").GetDouble())).ToList(), scale);
                        }
                        else section.ExampleText(Content(r) ?? "");
                    }
                }
            }
            if (anyTokens)
                section.Paragraph($"{method}: each token's background shows its share of the score (blue: the token's loss helps the query, red: it harms; the stronger, the larger); hover a token for its score.");
            return true;
        });
    }

    static bool AddImages(HtmlSection section, string dir, string pattern)
    {
        if (!Directory.Exists(dir)) return false;
        var files = Directory.GetFiles(dir, pattern).OrderBy(p => p, StringComparer.Ordinal).ToList();
        foreach (var f in files) section.Image(File.ReadAllBytes(f), Path.GetFileNameWithoutExtension(f), Path.GetFileName(f));
        return files.Count > 0;
    }

    /// <summary>Reads a results file written by another command; a malformed one (not JSON, or missing
    /// or mistyped fields) is a runtime error that names the file and the command that rewrites it.</summary>
    static T ReadResults<T>(string path, string writer, Func<JsonElement, T> read)
    {
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            return read(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new InfluenceSharpException($"{path}: malformed results file ({e.Message.Split('\n')[0]}); run `{writer}` again to rewrite it, or delete it");
        }
    }
}
