using System.Globalization;

namespace InfluenceSharp.Data;

/// <summary>
/// text-classes:PATH — labelled texts for text classification (<see cref="TextClassDataset"/>). PATH is
/// <list type="bullet">
/// <item>a table (CSV, or tab-separated when it ends in .tsv or .tab) with a header, a label column
/// (<c>label=NAME</c> or --label-column, default <c>label</c>) and a text column (<c>text=NAME</c>, default
/// <c>text</c>); labels as csv: reads them (integers are class indices, other texts are classes in
/// ordinal order); each example is named by its data row and file line;</item>
/// <item>a directory, or files separated by commas: one class per file (named by the file, without its
/// extension), its entries separated by lines holding only '%' (the fortune format; <c>docs=lines</c>
/// or <c>docs=blank</c> cut them otherwise); each example is named by its file and entry number. In a
/// directory, hidden files and fortune index files (*.dat, *.u8) are left out.</item>
/// </list>
/// Texts are tokenised (<c>tokenizer=gpt2</c>, the default, or <c>byte</c>) and cut or padded to
/// <c>seq</c> tokens (default 64). <c>per-class=N</c> keeps N examples of each larger class (seeded by
/// <c>split-seed</c>); the test set is a seeded split stratified by class (<c>test-fraction</c>, default
/// 0.2; <c>split-seed</c>, default 0).
/// </summary>
public sealed class TextClassesDataReader : DataReader
{
    public override string Prefix => "text-classes";
    public override string Usage => "text-classes:FILE|DIR";
    public override int Order => 55;
    public override IReadOnlyList<string> Keys => new[] { "label", "text", "docs", "tokenizer", "seq", "per-class", "test-fraction", "split-seed" };

    public override void Validate(DataSpec spec, string text)
    {
        TextDocuments.ParseSplit(spec["docs"], $"--data {text}", TextDocumentSplit.Percent);
        Options(spec, text);
        if (spec["text"] is "") throw new InfluenceSharpException($"--data {text}: text= needs a name");
    }

    static (TextTokenizer Tokenizer, int Seq, int? PerClass) Options(DataSpec spec, string text)
    {
        var tok = spec["tokenizer"] ?? "gpt2";
        if (!TextTokenizer.Names.Contains(tok)) throw new InfluenceSharpException($"--data {text}: tokenizer={tok}: choose {string.Join(" or ", TextTokenizer.Names)}");
        int seq = 64;
        if (spec["seq"] is { } s && (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out seq) || seq < 1 || seq > 65536))
            throw new InfluenceSharpException($"--data {text}: seq={s}: a sequence length between 1 and 65536");
        int? perClass = null;
        if (spec["per-class"] is { } p)
        {
            if (!int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var v) || v < 2)
                throw new InfluenceSharpException($"--data {text}: per-class={p}: a number of examples per class, at least 2");
            perClass = v;
        }
        return (TextTokenizer.Create(tok), seq, perClass);
    }

    /// <summary>One labelled text and where it came from.</summary>
    sealed record Entry(string Text, string Label, ExampleSource Source);

    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress)
    {
        string text = spec.ToString();
        var (tokenizer, seq, perClass) = Options(spec, text);
        var paths = (spec.Path ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(Path.GetFullPath).ToArray();
        if (paths.Length == 0) throw new InfluenceSharpException($"--data {text}: no file named");
        var source = spec with { Path = string.Join(",", paths) };
        List<Entry> entries;
        string[] names;
        bool byFile = paths.Length > 1 || Directory.Exists(paths[0]);
        if (byFile)
        {
            var split = TextDocuments.ParseSplit(spec["docs"], $"--data {text}", TextDocumentSplit.Percent);
            var files = paths.Length == 1 ? ClassFiles(paths[0], text) : paths;
            foreach (var f in files) if (!File.Exists(f)) throw new InfluenceSharpException($"--data {text}: {f}: file not found");
            names = files.Select(ClassName).ToArray();
            if (names.Distinct(StringComparer.Ordinal).Count() != names.Length)
                throw new InfluenceSharpException($"--data {text}: two files name the same class ({string.Join(", ", names.GroupBy(n => n).Where(g => g.Count() > 1).Select(g => g.Key))}); each file is a class named by its file name");
            entries = new List<Entry>();
            for (int c = 0; c < files.Length; c++)
            {
                var docs = TextDocuments.Read(files[c], split);
                if (docs.Count == 0) throw new InfluenceSharpException($"--data {text}: {files[c]} holds no entries");
                entries.AddRange(docs.Select((d, k) => new Entry(d.Text, names[c], ExampleSource.OfTextEntry(files[c], k + 1, d.Line))));
            }
            source = source.Set("docs", TextDocuments.Name(split));
        }
        else
        {
            if (spec["docs"] is not null) throw new InfluenceSharpException($"--data {text}: docs= applies to class files (a directory or several files), not to a table");
            string labelColumn = spec["label"] ?? "label", textColumn = spec["text"] ?? "text";
            entries = Table(paths[0], labelColumn, textColumn);
            var labelTexts = entries.Select(e => e.Label).ToList();
            bool numeric = labelTexts.All(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out _));
            if (numeric)
            {
                // Integer labels are class indices ("01" is class 1); at most the class count a model takes.
                var index = labelTexts.Select(t => int.Parse(t, NumberStyles.None, CultureInfo.InvariantCulture)).ToArray();
                int worst = Array.IndexOf(index, index.Max());
                if (index[worst] >= 1_000_000)
                    throw new InfluenceSharpException($"--data {text}: {entries[worst].Source}: label {labelTexts[worst]} is a class index above 999,999; give class names instead");
                entries = entries.Select((e, i) => e with { Label = index[i].ToString(CultureInfo.InvariantCulture) }).ToList();
                names = Enumerable.Range(0, index.Max() + 1).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray();
            }
            else names = labelTexts.Distinct().OrderBy(t => t, StringComparer.Ordinal).ToArray();
            source = source.Set("label", labelColumn).Set("text", textColumn);
        }
        if (names.Length < 2) throw new InfluenceSharpException($"--data {text}: one class; classification needs at least two");
        var classOf = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        var labels = entries.Select(e => classOf[e.Label]).ToArray();
        if (perClass is { } cap)
        {
            var keep = new List<int>();
            var rng = new Random(spec.SplitSeed);
            for (int c = 0; c < names.Length; c++)
            {
                var members = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
                if (members.Length > cap) { rng.Shuffle(members); members = members.Take(cap).ToArray(); }
                keep.AddRange(members);
            }
            keep.Sort();
            entries = keep.Select(i => entries[i]).ToList();
            labels = keep.Select(i => labels[i]).ToArray();
            source = source.Set("per-class", cap.ToString(CultureInfo.InvariantCulture));
        }
        var (tr, te) = DataSource.StratifiedSplit(labels, names.Length, spec.TestFraction, spec.SplitSeed);
        if (te.Length == 0) throw new InfluenceSharpException($"--data {text}: the test split is empty (too few examples per class for test-fraction {spec.TestFraction})");
        // Integer labels name classes by index (no names); others by their text.
        bool indexNames = !byFile && names.Select((n, i) => n == i.ToString(CultureInfo.InvariantCulture)).All(b => b);
        TextClassDataset Make(string name, int[] rows) => (TextClassDataset)TextClassDataset.Create(name, rows.Select(i => entries[i].Text).ToArray(),
                rows.Select(i => labels[i]).ToArray(), names.Length, indexNames ? null : names, tokenizer, seq)
            .WithSources(rows.Select(i => entries[i].Source).ToArray());
        source = source.Set("tokenizer", tokenizer.Name).Set("seq", seq.ToString(CultureInfo.InvariantCulture))
            .Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        return new DataSplit(Make("text-classes-train", tr), Make("text-classes-test", te), source.ToString());
    }

    /// <summary>The class files of a directory: regular files, not hidden, not fortune index files, in ordinal order.</summary>
    static string[] ClassFiles(string dir, string text)
    {
        var files = Directory.GetFiles(dir).Where(f =>
        {
            string n = Path.GetFileName(f);
            return !n.StartsWith('.') && !n.EndsWith(".dat", StringComparison.Ordinal) && !n.EndsWith(".u8", StringComparison.Ordinal);
        }).OrderBy(f => f, StringComparer.Ordinal).ToArray();
        if (files.Length == 0) throw new InfluenceSharpException($"--data {text}: {dir} holds no class files (one file per class, entries separated by lines holding only %)");
        return files;
    }

    static string ClassName(string file) => Path.GetFileNameWithoutExtension(file) is { Length: > 0 } n ? n : Path.GetFileName(file);

    /// <summary>The rows of a CSV or TSV table: (text, label, source) per data row.</summary>
    static List<Entry> Table(string path, string labelColumn, string textColumn)
    {
        bool tabs = path.EndsWith(".tsv", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".tab", StringComparison.OrdinalIgnoreCase);
        List<(int Line, string[] Fields)> records;
        if (tabs)
        {
            // Raw lines: trimming would drop empty trailing fields and a text's trailing spaces.
            var lines = TextDocuments.ReadUtf8(path).Split('\n').Select(l => l.TrimEnd('\r')).ToArray();
            records = lines.Select((l, i) => (Line: i + 1, Fields: l.Split('\t'))).Where(r => r.Fields.Any(f => f.Trim().Length > 0)).ToList();
        }
        else records = CsvDataReader.ReadRecords(path);
        if (records.Count == 0) throw new InfluenceSharpException($"{path}: empty file (a table needs a header row and data rows)");
        var header = records[0].Fields.Select(h => h.Trim()).ToArray();
        int Column(string name, string option)
        {
            int i = Array.IndexOf(header, name);
            if (i < 0) throw new InfluenceSharpException($"{path}: no {option} column '{name}' (columns: {string.Join(", ", header.Take(12))}{(header.Length > 12 ? ", ..." : "")}); choose it with ?{option}=NAME");
            // Two columns of one name would make the choice silent: refuse as the numeric csv: reader does.
            if (Array.LastIndexOf(header, name) != i) throw new InfluenceSharpException($"{path}: row 1 (header): column '{name}' appears twice");
            return i;
        }
        int li = Column(labelColumn, "label"), ti = Column(textColumn, "text");
        if (li == ti) throw new InfluenceSharpException($"{path}: the label and text columns are both '{labelColumn}'; choose them with ?label=NAME and ?text=NAME");
        if (records.Count < 2) throw new InfluenceSharpException($"{path}: no data rows after the header");
        string file = Path.GetFileName(path);
        var entries = new List<Entry>();
        for (int r = 1; r < records.Count; r++)
        {
            var (line, fields) = records[r];
            if (fields.Length != header.Length)
                throw new InfluenceSharpException($"{file}: line {line} has {fields.Length} field(s) but the header has {header.Length} (ragged or truncated row; {path})");
            string label = fields[li].Trim();
            if (label.Length == 0) throw new InfluenceSharpException($"{file}: line {line}, column '{labelColumn}': empty label ({path})");
            entries.Add(new Entry(fields[ti], label, ExampleSource.OfCsvRow(path, r, line)));
        }
        return entries;
    }
}
