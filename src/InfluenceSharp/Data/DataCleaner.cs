using System.Globalization;
using System.Text;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Data;

/// <summary>What to do with one training example in a cleaned copy of a data set.</summary>
public enum CleanDecision { Remove, Relabel, Keep }

/// <summary>One decision about training example <see cref="Index"/> of a run, and why it was made
/// (the method, its score and rank, the given and the predicted label), which the cleaned copy records.</summary>
public sealed record CleanItem(int Index, CleanDecision Decision, int? NewLabel = null)
{
    public string? Method { get; init; }
    public double? Score { get; init; }
    public int? Rank { get; init; }
    public int? PredictedLabel { get; init; }
}

/// <summary>Where and how to write a cleaned copy.</summary>
public sealed record CleanOptions(string OutDir)
{
    /// <summary>Image folders: copy the removed files to OUT/quarantine/ (same relative paths) instead of leaving them out.</summary>
    public bool Quarantine { get; init; }
    /// <summary>The run's test set, when the data were split by seed: the copy then keeps that split
    /// (an image folder gets train/ and test/ folders, a CSV table a NAME-test.csv file beside it), so
    /// that a model trained on the copy is tested on the same examples. Null: the copy is split afresh.</summary>
    public IReadOnlyList<ExampleSource>? KeepTestSet { get; init; }
    /// <summary>Replace an existing OUT written by an earlier clean.</summary>
    public bool Overwrite { get; init; }
    /// <summary>Recorded in OUT/clean.json: the run and the result file the decisions came from.</summary>
    public Dictionary<string, string?> Provenance { get; init; } = new();
}

/// <summary>What a clean wrote: the cleaned data (a folder or a CSV file), a --data spec for it, and counts.</summary>
public sealed record CleanResult(string DataPath, string Spec, int Removed, int Relabeled, int Kept, int Quarantined);

/// <summary>
/// Writes a cleaned copy of a user's data set — an image folder without (or with relabelled) flagged
/// files, a CSV table without (or with relabelled) flagged rows, header kept — and never touches the
/// original. The copy is written to a temporary folder beside OUT and renamed into place, so OUT is
/// either absent, the old copy or the whole new one. Layout: OUT/NAME (the cleaned folder or file,
/// named like the original), OUT/changes.csv (every removal and relabelling and why),
/// OUT/quarantine/ (with <see cref="CleanOptions.Quarantine"/>: the removed files and quarantine.csv),
/// OUT/clean.json (what was cleaned, from what).
/// </summary>
public static class DataCleaner
{
    public const string MarkerFile = "clean.json";
    public const string ChangesFile = "changes.csv";
    public const string QuarantineDir = "quarantine";

    /// <param name="dataSpec">The run's recorded data spec (imagefolder: or csv:).</param>
    /// <param name="train">The run's training set, with sources (the decisions' indices refer to it).</param>
    /// <param name="items">The decisions; indices must be distinct.</param>
    /// <param name="options">Output folder and options.</param>
    public static CleanResult Clean(string dataSpec, LabeledDataset train, IReadOnlyList<CleanItem> items, CleanOptions options)
    {
        var spec = DataSpec.Parse(dataSpec);
        if (spec.Kind != DataKind.ImageFolder && spec.Kind != DataKind.Csv) throw new InfluenceSharpException(CannotClean(spec));
        if (train.Sources is null) throw new InfluenceSharpException($"{dataSpec}: the training data carry no sources (files or rows), so there is nothing to clean");
        var seen = new HashSet<int>();
        foreach (var it in items)
        {
            if (it.Index < 0 || it.Index >= train.Count)
                throw new InfluenceSharpException($"training example {it.Index} is outside the run's training set (0..{train.Count - 1})");
            if (!seen.Add(it.Index)) throw new InfluenceSharpException($"training example {it.Index} has two decisions");
            if (it.Decision == CleanDecision.Relabel && (it.NewLabel is not { } l || l < 0 || l >= train.NumClasses))
                throw new InfluenceSharpException($"training example {it.Index}: relabel needs a class of the data (0..{train.NumClasses - 1})");
        }
        string source = Path.GetFullPath(spec.Path!).TrimEnd(Path.DirectorySeparatorChar);
        string outDir = Path.GetFullPath(options.OutDir).TrimEnd(Path.DirectorySeparatorChar);
        string sourceRoot = source;
        if (Inside(outDir, sourceRoot) || Inside(sourceRoot, outDir))
            throw new InfluenceSharpException($"--out {options.OutDir}: is {(Inside(outDir, sourceRoot) ? "inside" : "around")} the data ({sourceRoot}); the cleaned copy must go elsewhere, the original is never changed");
        if (spec["test"] is { } testFile && (Inside(outDir, Path.GetFullPath(testFile)) || Inside(Path.GetFullPath(testFile), outDir)))
            throw new InfluenceSharpException($"--out {options.OutDir}: holds the data's test file {testFile}; choose another folder");
        bool replace = false;
        if (File.Exists(outDir)) throw new InfluenceSharpException($"--out {options.OutDir}: is a file; give a folder that does not exist yet");
        // An empty folder (e.g. made by the caller to check that --out is writable) counts as new.
        bool emptyDir = Directory.Exists(outDir) && !Directory.EnumerateFileSystemEntries(outDir).Any();
        if (Directory.Exists(outDir) && !emptyDir)
        {
            if (!options.Overwrite) throw new InfluenceSharpException($"--out {options.OutDir}: already exists; pass --overwrite to replace it, or choose another folder");
            if (!File.Exists(Path.Combine(outDir, MarkerFile)))
                throw new InfluenceSharpException($"--out {options.OutDir}: was not written by `influence data clean` (no {MarkerFile}); --overwrite only replaces an earlier cleaned copy");
            replace = true;
        }
        string parent = Path.GetDirectoryName(outDir) ?? throw new InfluenceSharpException($"--out {options.OutDir}: not a folder that can be created");
        Directory.CreateDirectory(parent);
        string tag = Guid.NewGuid().ToString("N")[..8];
        string temp = Path.Combine(parent, $".{Path.GetFileName(outDir)}.tmp-{tag}");
        Directory.CreateDirectory(temp);
        try
        {
            var changes = items.Where(i => i.Decision != CleanDecision.Keep).OrderBy(i => i.Rank ?? int.MaxValue).ThenBy(i => i.Index).ToList();
            var (dataPath, newSpec, quarantined) = spec.Kind == DataKind.ImageFolder
                ? CleanFolder(spec, source, train, changes, temp, outDir, options.Quarantine, options.KeepTestSet)
                : CleanCsv(spec, source, train, changes, temp, outDir, options.KeepTestSet);
            string why = ChangesCsv(train, changes);
            AtomicFile.WriteAllText(Path.Combine(temp, ChangesFile), why);
            if (quarantined > 0) AtomicFile.WriteAllText(Path.Combine(temp, QuarantineDir, "quarantine.csv"), ChangesCsv(train, changes.Where(c => c.Decision == CleanDecision.Remove).ToList()));
            var result = new CleanResult(dataPath, newSpec, changes.Count(c => c.Decision == CleanDecision.Remove),
                changes.Count(c => c.Decision == CleanDecision.Relabel), items.Count(c => c.Decision == CleanDecision.Keep), quarantined);
            var marker = new Dictionary<string, object?>(options.Provenance.Select(kv => new KeyValuePair<string, object?>(kv.Key, kv.Value)))
            {
                ["source"] = dataSpec, ["cleaned"] = newSpec, ["removed"] = result.Removed, ["relabeled"] = result.Relabeled,
                ["kept"] = result.Kept, ["quarantined"] = result.Quarantined,
            };
            Json.WriteFile(Path.Combine(temp, MarkerFile), marker);
            if (replace)
            {
                string old = Path.Combine(parent, $".{Path.GetFileName(outDir)}.old-{tag}");
                Directory.Move(outDir, old);
                try { Directory.Move(temp, outDir); }
                catch
                {
                    // Put the earlier copy back rather than leave neither in place.
                    if (!Directory.Exists(outDir)) Directory.Move(old, outDir);
                    throw;
                }
                try { Directory.Delete(old, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            }
            else
            {
                if (emptyDir) Directory.Delete(outDir);
                Directory.Move(temp, outDir);
            }
            return result;
        }
        catch
        {
            try { if (Directory.Exists(temp)) Directory.Delete(temp, true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw;
        }
    }

    /// <summary>Why a data set cannot be cleaned, and what to do instead.</summary>
    public static string CannotClean(DataSpec spec) => spec.Kind.Name switch
    {
        "tensors" => $"--data {spec}: data clean writes image folders and CSV tables, not tensor files; drop the flagged rows in Python " +
            "(the index in the source column, e.g. 'X[12]' is X[12]: np.delete(X, rows, axis=0), the same for y) and train on the new file",
        "tinted" => $"--data {spec}: tinted data are generated from Fashion-MNIST, there are no files to clean; use the index column of the results",
        _ => $"--data {spec}: built-in or IDX/CIFAR-10 data hold every example in one array file, which data clean does not rewrite; " +
            "export the data as an image folder (one file per example, a folder per class) or a CSV table, train on that, and clean it; " +
            "or drop the flagged indices (the source column: file and index) when you prepare the data",
    };

    static bool Inside(string path, string root) =>
        path.Equals(root, StringComparison.Ordinal) || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    static string ChangesCsv(LabeledDataset train, IReadOnlyList<CleanItem> changes)
    {
        var sb = new StringBuilder("index,source,decision,new_label,method,score,rank,given_label,predicted_label\n");
        foreach (var c in changes)
            sb.Append(CultureInfo.InvariantCulture,
                $"{c.Index},{SourceText.Csv(SourceText.Of(train, c.Index))},{c.Decision.ToString().ToLowerInvariant()},{(c.NewLabel is { } n ? SourceText.Csv(train.ClassName(n)) : "")}," +
                $"{SourceText.Csv(c.Method ?? "")},{(c.Score is { } s ? s.ToString("R", CultureInfo.InvariantCulture) : "")},{c.Rank?.ToString(CultureInfo.InvariantCulture) ?? ""}," +
                $"{SourceText.Csv(train.ClassName(train.Labels[c.Index]))},{(c.PredictedLabel is { } p ? SourceText.Csv(train.ClassName(p)) : "")}\n");
        return sb.ToString();
    }

    /// <summary>The copy sits beside the files this command writes: a data set with one of their names would collide.</summary>
    static void RefuseReservedName(string name, string path)
    {
        if (name is MarkerFile or ChangesFile or QuarantineDir)
            throw new InfluenceSharpException($"{path}: a data set named '{name}' would collide with the '{name}' that data clean writes beside the copy; rename it (or copy it under another name) first");
    }

    static (string DataPath, string Spec, int Quarantined) CleanFolder(DataSpec spec, string root, LabeledDataset train, List<CleanItem> changes,
        string temp, string outDir, bool quarantine, IReadOnlyList<ExampleSource>? keepTest)
    {
        var testFiles = keepTest?.Where(t => t.Kind == ExampleSourceKind.File).Select(t => t.Name!).ToHashSet(StringComparer.Ordinal);
        string name = Path.GetFileName(root);
        RefuseReservedName(name, root);
        string dest = Path.Combine(temp, name);
        bool splitLayout = Directory.Exists(Path.Combine(root, "train"));
        var byPath = new Dictionary<string, CleanItem>(StringComparer.Ordinal);
        foreach (var c in changes)
        {
            var s = train.Sources![c.Index];
            if (s.Kind != ExampleSourceKind.File || !string.Equals(Path.GetFullPath(s.Origin).TrimEnd(Path.DirectorySeparatorChar), root, StringComparison.Ordinal))
                throw new InfluenceSharpException($"training example {c.Index} ({s.Text}) is not a file of {root}");
            byPath[s.Name!] = c;
        }
        var files = Files(root);
        var present = new HashSet<string>(files, StringComparer.Ordinal);
        foreach (var c in byPath.Keys.Where(p => !present.Contains(p)))
            throw new InfluenceSharpException($"{Path.Combine(root, c)}: flagged file no longer there (the data changed since the run)");
        // Relabelled files go to the new class's folder, under the same name.
        var moved = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (rel, c) in byPath.Where(kv => kv.Value.Decision == CleanDecision.Relabel))
        {
            var parts = rel.Split('/');
            int ci = splitLayout ? 1 : 0;
            if (parts.Length <= ci + 1) throw new InfluenceSharpException($"{rel}: not inside a class folder");
            parts[ci] = train.ClassName(c.NewLabel!.Value);
            string to = string.Join('/', parts);
            if (to != rel && (present.Contains(to) || moved.ContainsValue(to)))
                throw new InfluenceSharpException($"{rel}: relabelling to {train.ClassName(c.NewLabel.Value)} would overwrite {to}; rename one of the files first");
            moved[rel] = to;
        }
        int quarantined = 0;
        foreach (var rel in files)
        {
            string from = Path.Combine(root, rel.Replace('/', Path.DirectorySeparatorChar));
            string? to = rel;
            if (byPath.TryGetValue(rel, out var c))
            {
                if (c.Decision == CleanDecision.Remove)
                {
                    if (!quarantine) continue;
                    Copy(from, Path.Combine(temp, QuarantineDir, rel.Replace('/', Path.DirectorySeparatorChar)));
                    quarantined++;
                    continue;
                }
                to = moved[rel];
            }
            // Keeping the run's split: its test images go to test/, everything else to train/.
            if (testFiles is not null) to = (testFiles.Contains(rel) ? "test/" : "train/") + to;
            Copy(from, Path.Combine(dest, to.Replace('/', Path.DirectorySeparatorChar)));
        }
        string newPath = Path.Combine(outDir, name);
        return (newPath, new DataSpec(DataKind.ImageFolder, newPath, testFiles is null ? spec.Query : WithoutSplit(spec.Query)).ToString(), quarantined);
    }

    static Dictionary<string, string> WithoutSplit(IReadOnlyDictionary<string, string> query) =>
        query.Where(kv => kv.Key is not ("test-fraction" or "split-seed")).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    /// <summary>A record's text with a line break at its end (the last record of a file may have none).</summary>
    static string Line(string text, int start, int end, string newline)
    {
        string r = text[start..end];
        return r.EndsWith('\n') || r.EndsWith('\r') ? r : r + newline;
    }

    static void Copy(string from, string to)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(to)!);
        File.Copy(from, to, overwrite: false);
        File.SetLastWriteTimeUtc(to, File.GetLastWriteTimeUtc(from));
    }

    /// <summary>Every file under the folder ('/'-separated relative paths, ordinal order), following
    /// linked folders once each; the decode cache is left out.</summary>
    static List<string> Files(string root)
    {
        var result = new List<string>();
        var visited = new HashSet<string>(StringComparer.Ordinal);
        void Walk(string dir, string rel)
        {
            var real = new DirectoryInfo(dir).ResolveLinkTarget(true)?.FullName ?? Path.GetFullPath(dir);
            if (!visited.Add(real)) return;
            foreach (var f in Directory.GetFiles(dir).OrderBy(f => f, StringComparer.Ordinal))
                result.Add(rel + Path.GetFileName(f));
            foreach (var d in Directory.GetDirectories(dir).OrderBy(d => d, StringComparer.Ordinal))
            {
                string n = Path.GetFileName(d);
                if (rel.Length == 0 && n == ImageFolderReader.CacheDirName) continue;
                Walk(d, rel + n + "/");
            }
        }
        Walk(root, "");
        return result;
    }

    static (string DataPath, string Spec, int Quarantined) CleanCsv(DataSpec spec, string file, LabeledDataset train, List<CleanItem> changes,
        string temp, string outDir, IReadOnlyList<ExampleSource>? keepTest)
    {
        string text;
        try { text = File.ReadAllText(file, Encoding.UTF8); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{file}: cannot read ({e.Message})", e); }
        // Keep the file's own encoding marks: read the raw bytes' BOM.
        var records = CsvDataReader.Spans(text, file).ToList();
        if (records.Count < 2) throw new InfluenceSharpException($"{file}: no data rows");
        string labelColumn = spec["label"] ?? "label";
        int li = Array.FindIndex(records[0].Fields, h => h.Trim() == labelColumn);
        if (li < 0) throw new InfluenceSharpException($"{file}: no label column '{labelColumn}' (the data changed since the run?)");
        var byRecord = new Dictionary<int, CleanItem>();
        foreach (var c in changes)
        {
            var s = train.Sources![c.Index];
            if (s.Kind != ExampleSourceKind.CsvRow || !string.Equals(Path.GetFullPath(s.Origin), file, StringComparison.Ordinal))
                throw new InfluenceSharpException($"training example {c.Index} ({s.Text}) is not a row of {file}");
            if (s.Number >= records.Count || records[s.Number].Row != s.Line)
                throw new InfluenceSharpException($"{file}: {s.Text} is not where the run found it (the file changed since the run)");
            byRecord[s.Number] = c;
        }
        string Relabelled(int r, CleanItem c)
        {
            var (_, fields, start, end) = records[r];
            var f = (string[])fields.Clone();
            f[li] = train.ClassName(c.NewLabel!.Value);
            int body = end;
            while (body > start && text[body - 1] is '\n' or '\r') body--;
            return string.Join(',', f.Select(SourceText.Csv)) + text[body..end];
        }
        string name = Path.GetFileName(file);
        RefuseReservedName(name, file);
        bool bom = File.ReadAllBytes(file).AsSpan().StartsWith(new byte[] { 0xEF, 0xBB, 0xBF });
        void Write(string path, string content)
        {
            if (content.Length > 0 && content[0] == '\uFEFF') content = content[1..];
            File.WriteAllText(path, content, new UTF8Encoding(bom));
        }
        string newPath = Path.Combine(outDir, name);
        if (keepTest is not null)
        {
            // The run's test rows go to NAME-test.csv, the others (cleaned) to NAME; both with the header.
            var testRows = keepTest.Where(t => t.Kind == ExampleSourceKind.CsvRow).Select(t => t.Number).ToHashSet();
            var (_, _, hs, he) = records[0];
            int nl = text.IndexOf('\n', hs);
            string newline = nl > 0 && text[nl - 1] == '\r' ? "\r\n" : "\n";
            var trainText = new StringBuilder(Line(text, 0, he, newline));
            var testText = new StringBuilder(Line(text, 0, he, newline));
            for (int r = 1; r < records.Count; r++)
            {
                var (_, _, start, end) = records[r];
                if (testRows.Contains(r)) testText.Append(Line(text, start, end, newline));
                else if (!byRecord.TryGetValue(r, out var c)) trainText.Append(Line(text, start, end, newline));
                else if (c.Decision == CleanDecision.Relabel) { string t = Relabelled(r, c); trainText.Append(Line(t, 0, t.Length, newline)); }
            }
            string testName = Path.GetFileNameWithoutExtension(name) + "-test" + Path.GetExtension(name);
            Write(Path.Combine(temp, name), trainText.ToString());
            Write(Path.Combine(temp, testName), testText.ToString());
            var q = WithoutSplit(spec.Query);
            q["test"] = Path.Combine(outDir, testName);
            return (newPath, new DataSpec(DataKind.Csv, newPath, q).ToString(), 0);
        }
        // Everything but the removed rows' text, byte for byte; relabelled rows rewritten.
        var sb = new StringBuilder(text.Length);
        int pos = 0;
        for (int r = 1; r < records.Count; r++)
        {
            if (!byRecord.TryGetValue(r, out var c)) continue;
            var (_, _, start, end) = records[r];
            sb.Append(text, pos, start - pos);
            pos = end;
            if (c.Decision == CleanDecision.Relabel) sb.Append(Relabelled(r, c));
        }
        sb.Append(text, pos, text.Length - pos);
        Write(Path.Combine(temp, name), sb.ToString());
        return (newPath, new DataSpec(DataKind.Csv, newPath, spec.Query).ToString(), 0);
    }
}
