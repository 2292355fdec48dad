using System.Globalization;
using System.Text;

namespace InfluenceSharp.Data;

/// <summary>
/// Reads <c>csv:FILE</c>: a table with a header row, one example per row, a label column (default
/// <c>label</c>; <c>?label=NAME</c> or --label-column) and numeric features in every other column.
/// Labels that are all integers are class indices 0..K-1; otherwise the distinct label texts, in
/// ordinal order, are the classes (and their display names). Features are standardised with the
/// training rows' mean and standard deviation (a constant column is only centred), the same
/// statistics applied to the test rows; they are recomputed from the same file on every load and
/// the data fingerprint covers the standardised values, so a run's later commands rebuild exactly
/// the same inputs. The test set is <c>?test=FILE</c> (--test-data; the same columns) or a seeded
/// split stratified by class (<c>test-fraction</c>, default 0.2, <c>split-seed</c>, default 0).
/// Errors name the file, the row (the file's line, the header being row 1) and the column.
/// Fields are comma separated; double quotes enclose fields with commas, quotes ("") or line breaks.
/// </summary>
public static class CsvDataReader
{
    sealed record Table(string Path, string[] Header, List<(int Row, string[] Fields)> Rows);

    public static DataSplit Load(DataSpec spec)
    {
        string path = Path.GetFullPath(spec.Path!);
        string labelColumn = spec["label"] ?? "label";
        var source = spec with { Path = path };
        var train = Parse(path);
        int li = LabelIndex(train, labelColumn);
        var featureCols = Enumerable.Range(0, train.Header.Length).Where(i => i != li).ToArray();
        if (featureCols.Length == 0) throw new InfluenceSharpException($"{path}: no feature columns besides the label column '{labelColumn}'");
        Table? test = null;
        if (spec["test"] is { } tp)
        {
            string testPath = Path.GetFullPath(tp);
            source = source.Set("test", testPath);
            test = Parse(testPath);
            var missing = train.Header.Where(h => !test.Header.Contains(h)).ToList();
            if (missing.Count > 0) throw new InfluenceSharpException($"{testPath}: lacks the column(s) {string.Join(", ", missing.Select(m => $"'{m}'"))} of {path}");
        }
        // Classes: integers as given, otherwise the distinct texts in ordinal order.
        var labelTexts = train.Rows.Select(r => r.Fields[li]).Concat(test is null ? Enumerable.Empty<string>() : test.Rows.Select(r => r.Fields[Array.IndexOf(test.Header, labelColumn)])).ToList();
        foreach (var (t, row, file) in Cells(train, li).Concat(test is null ? Enumerable.Empty<(string, int, string)>() : Cells(test, Array.IndexOf(test.Header, labelColumn))))
            if (t.Trim().Length == 0) throw new InfluenceSharpException($"{Path.GetFileName(file)}: row {row}, column '{labelColumn}': empty label ({file})");
        bool numeric = labelTexts.All(t => int.TryParse(t.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out _));
        string[]? names = numeric ? null : labelTexts.Select(t => t.Trim()).Distinct().OrderBy(t => t, StringComparer.Ordinal).ToArray();
        int numClasses = numeric ? labelTexts.Max(t => int.Parse(t.Trim(), CultureInfo.InvariantCulture)) + 1 : names!.Length;
        if (numClasses < 2) throw new InfluenceSharpException($"{path}: column '{labelColumn}' holds one class; classification needs at least two");
        int Label(string t) => numeric ? int.Parse(t.Trim(), CultureInfo.InvariantCulture) : Array.BinarySearch(names!, t.Trim(), StringComparer.Ordinal);

        var (x, y) = Matrix(train, featureCols.Select(c => train.Header[c]).ToArray(), labelColumn, Label);
        int d = featureCols.Length;
        float[]? xt = null; int[]? yt = null;
        var trainSources = Sources(train);
        ExampleSource[] testSources;
        if (test is not null)
        {
            (xt, yt) = Matrix(test, featureCols.Select(c => train.Header[c]).ToArray(), labelColumn, Label);
            testSources = Sources(test);
        }
        else
        {
            var (tr, te) = DataSource.StratifiedSplit(y, numClasses, spec.TestFraction, spec.SplitSeed);
            if (te.Length == 0) throw new InfluenceSharpException($"{path}: the test split is empty (too few rows per class for test-fraction {spec.TestFraction})");
            (xt, yt) = (Rows(x, d, te), te.Select(i => y[i]).ToArray());
            (x, y) = (Rows(x, d, tr), tr.Select(i => y[i]).ToArray());
            (trainSources, testSources) = (tr.Select(i => trainSources[i]).ToArray(), te.Select(i => trainSources[i]).ToArray());
            source = source.Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        }
        var (mean, std) = Statistics(x, d);
        Standardise(x, d, mean, std);
        Standardise(xt, d, mean, std);
        source = source.Set("label", labelColumn);
        return new DataSplit(new FloatDataset("csv-train", x, new[] { d }, y, numClasses, names).WithSources(trainSources),
            new FloatDataset("csv-test", xt, new[] { d }, yt!, numClasses, names).WithSources(testSources), source.ToString())
        {
            Scaling = new FeatureScaling(featureCols.Select(c => train.Header[c]).ToArray(), mean, std),
        };
    }

    /// <summary>Per-feature mean and standard deviation (population; 1 for a constant feature), in float64.</summary>
    public static (double[] Mean, double[] Std) Statistics(float[] x, int d)
    {
        int n = x.Length / d;
        var mean = new double[d];
        var sq = new double[d];
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) mean[j] += x[i * d + j];
        for (int j = 0; j < d; j++) mean[j] /= n;
        for (int i = 0; i < n; i++) for (int j = 0; j < d; j++) { double v = x[i * d + j] - mean[j]; sq[j] += v * v; }
        var std = sq.Select(s => Math.Sqrt(s / n)).Select(s => s > 0 ? s : 1).ToArray();
        return (mean, std);
    }

    static void Standardise(float[] x, int d, double[] mean, double[] std)
    {
        for (int i = 0; i < x.Length; i++) x[i] = (float)((x[i] - mean[i % d]) / std[i % d]);
    }

    static float[] Rows(float[] x, int d, int[] rows)
    {
        var r = new float[rows.Length * d];
        for (int i = 0; i < rows.Length; i++) Array.Copy(x, rows[i] * d, r, i * d, d);
        return r;
    }

    /// <summary>Each data row's source: its number under the header (1-based) and the line it starts on.</summary>
    static ExampleSource[] Sources(Table t) => t.Rows.Select((r, i) => ExampleSource.OfCsvRow(t.Path, i + 1, r.Row)).ToArray();

    static IEnumerable<(string Text, int Row, string File)> Cells(Table t, int col) => t.Rows.Select(r => (r.Fields[col], r.Row, t.Path));

    static int LabelIndex(Table t, string labelColumn)
    {
        int li = Array.IndexOf(t.Header, labelColumn);
        if (li < 0) throw new InfluenceSharpException($"{t.Path}: no label column '{labelColumn}' (columns: {string.Join(", ", t.Header.Take(12))}{(t.Header.Length > 12 ? ", ..." : "")}); choose it with --label-column");
        return li;
    }

    static (float[] X, int[] Y) Matrix(Table t, string[] features, string labelColumn, Func<string, int> label)
    {
        int li = LabelIndex(t, labelColumn);
        var cols = features.Select(f => Array.IndexOf(t.Header, f)).ToArray();
        var x = new float[(long)t.Rows.Count * cols.Length];
        var y = new int[t.Rows.Count];
        string file = Path.GetFileName(t.Path);
        for (int r = 0; r < t.Rows.Count; r++)
        {
            var (row, fields) = t.Rows[r];
            for (int j = 0; j < cols.Length; j++)
            {
                string cell = fields[cols[j]].Trim();
                if (!double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                    throw new InfluenceSharpException($"{file}: row {row}, column '{features[j]}': '{cell}' is not a number{(cell.Length == 0 ? " (empty cell)" : "")} ({t.Path})");
                if (!double.IsFinite(v) || Math.Abs(v) > float.MaxValue)
                    throw new InfluenceSharpException($"{file}: row {row}, column '{features[j]}': '{cell}' is not a finite number ({t.Path})");
                x[(long)r * cols.Length + j] = (float)v;
            }
            y[r] = label(fields[li]);
            if (y[r] < 0) throw new InfluenceSharpException($"{file}: row {row}, column '{labelColumn}': '{fields[li].Trim()}' is not a class of the training data ({t.Path})");
        }
        return (x, y);
    }

    /// <summary>A CSV file's records (header included) with the line each starts on; blank lines are
    /// skipped. For reading result files (suspicious-*.csv, rankings, decisions).</summary>
    public static List<(int Line, string[] Fields)> ReadRecords(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try { return Records(File.ReadAllText(path, Encoding.UTF8), path).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
    }

    static Table Parse(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        string text;
        try { text = File.ReadAllText(path, Encoding.UTF8); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
        var records = Records(text, path).ToList();
        if (records.Count == 0) throw new InfluenceSharpException($"{path}: empty file (a CSV table needs a header row and data rows)");
        var header = records[0].Fields.Select(h => h.Trim()).ToArray();
        for (int i = 0; i < header.Length; i++)
        {
            if (header[i].Length == 0) throw new InfluenceSharpException($"{path}: row 1 (header), column {i + 1} has no name");
            if (Array.IndexOf(header, header[i]) != i) throw new InfluenceSharpException($"{path}: row 1 (header): column '{header[i]}' appears twice");
        }
        var rows = records.Skip(1).ToList();
        if (rows.Count == 0) throw new InfluenceSharpException($"{path}: no data rows after the header");
        foreach (var (row, fields) in rows)
            if (fields.Length != header.Length)
                throw new InfluenceSharpException($"{Path.GetFileName(path)}: row {row} has {fields.Length} field(s) but the header has {header.Length} (ragged or truncated row; {path})");
        return new Table(path, header, rows);
    }

    /// <summary>The file's records with the line each starts on; blank lines are skipped.</summary>
    static IEnumerable<(int Row, string[] Fields)> Records(string text, string path) => Spans(text, path).Select(r => (r.Row, r.Fields));

    /// <summary>The records of CSV text with the line each starts on and its span in the text
    /// [Start, End), its line break included; blank lines are skipped.</summary>
    public static IEnumerable<(int Row, string[] Fields, int Start, int End)> Spans(string text, string path)
    {
        int line = 1, i = 0;
        if (text.Length > 0 && text[0] == '\uFEFF') i = 1;
        while (i < text.Length)
        {
            int start = line, begin = i;
            var fields = new List<string>();
            var field = new StringBuilder();
            bool blank = true;
            while (true)
            {
                if (i < text.Length && text[i] == '"' && field.Length == 0)
                {
                    blank = false;
                    i++;
                    while (true)
                    {
                        if (i >= text.Length) throw new InfluenceSharpException($"{Path.GetFileName(path)}: row {start}: a quoted field is not closed before the end of the file (truncated? {path})");
                        char c = text[i++];
                        if (c == '"')
                        {
                            if (i < text.Length && text[i] == '"') { field.Append('"'); i++; continue; }
                            break;
                        }
                        if (c == '\n') line++;
                        field.Append(c);
                    }
                }
                if (i >= text.Length || text[i] == '\n' || text[i] == '\r')
                {
                    fields.Add(field.ToString());
                    if (i < text.Length && text[i] == '\r') i++;
                    if (i < text.Length && text[i] == '\n') i++;
                    line++;
                    break;
                }
                if (text[i] == ',') { fields.Add(field.ToString()); field.Clear(); blank = false; i++; continue; }
                if (!char.IsWhiteSpace(text[i])) blank = false;
                field.Append(text[i++]);
            }
            if (!(blank && fields.Count == 1)) yield return (start, fields.ToArray(), begin, i);
        }
    }
}

/// <summary>csv:FILE — a table with a label column (see <see cref="CsvDataReader"/>).</summary>
public sealed class CsvTableDataReader : DataReader
{
    public override string Prefix => "csv";
    public override string Usage => "csv:FILE";
    public override int Order => 40;
    public override IReadOnlyList<string> Keys => new[] { "label", "test", "test-fraction", "split-seed" };
    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress) => CsvDataReader.Load(spec);
}
