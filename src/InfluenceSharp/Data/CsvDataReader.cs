using System.Globalization;
using System.Runtime.InteropServices;
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
/// The rows are streamed, never held as text: each row's features go to a float32 file in the temp
/// folder (unlinked at once, so nothing is left behind), standardised there in place and read back
/// row by row, so memory does not grow with the table beyond a label and a line number per row.
/// </summary>
public static class CsvDataReader
{
    /// <summary>One file's rows decoded: the features as float32 rows in a temporary file (already
    /// unlinked; read through <see cref="Store"/>), each row's label text (an index into the shared
    /// list of distinct texts) and the line it starts on.</summary>
    sealed record Decoded(string Path, FilePixelStore Store, int[] LabelText, int[] Lines);

    /// <summary>Unlinks a temporary file that an open store still reads (it lives until the store is
    /// collected or the process ends; nothing is left behind).</summary>
    static void Unlink(string tmp)
    {
        try { File.Delete(tmp); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { /* left in the temp folder */ }
    }

    public static DataSplit Load(DataSpec spec)
    {
        string path = Path.GetFullPath(spec.Path!);
        string labelColumn = spec["label"] ?? "label";
        var source = spec with { Path = path };
        var header = Header(path);
        int li = LabelIndex(path, header, labelColumn);
        var features = Enumerable.Range(0, header.Length).Where(i => i != li).Select(i => header[i]).ToArray();
        if (features.Length == 0) throw new InfluenceSharpException($"{path}: no feature columns besides the label column '{labelColumn}'");
        string? testPath = null;
        if (spec["test"] is { } tp)
        {
            testPath = Path.GetFullPath(tp);
            source = source.Set("test", testPath);
            var testHeader = Header(testPath);
            var missing = header.Where(h => !testHeader.Contains(h)).ToList();
            if (missing.Count > 0) throw new InfluenceSharpException($"{testPath}: lacks the column(s) {string.Join(", ", missing.Select(m => $"'{m}'"))} of {path}");
        }
        // The rows are streamed, never held as text: features go to a float32 file, labels stay as
        // indices into the distinct label texts.
        var texts = new Dictionary<string, int>(StringComparer.Ordinal);
        var train = Decode(path, features, labelColumn, texts);
        try
        {
            var test = testPath is null ? null : Decode(testPath, features, labelColumn, texts);
            try { return Build(spec, source, path, labelColumn, features, texts, train, test); }
            finally { if (test is not null) Unlink(test.Store.Path); }
        }
        finally { Unlink(train.Store.Path); }
    }

    static DataSplit Build(DataSpec spec, DataSpec source, string path, string labelColumn, string[] features, Dictionary<string, int> texts, Decoded train, Decoded? test)
    {
        // Classes: integers as given, otherwise the distinct texts in ordinal order.
        var distinct = texts.OrderBy(kv => kv.Value).Select(kv => kv.Key.Trim()).ToArray();
        bool numeric = distinct.All(t => int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out _));
        string[]? names = numeric ? null : distinct.Distinct().OrderBy(t => t, StringComparer.Ordinal).ToArray();
        int numClasses = numeric ? distinct.Max(t => int.Parse(t, CultureInfo.InvariantCulture)) + 1 : names!.Length;
        if (numClasses < 2) throw new InfluenceSharpException($"{path}: column '{labelColumn}' holds one class; classification needs at least two");
        var classOfText = distinct.Select(t => numeric ? int.Parse(t, CultureInfo.InvariantCulture) : Array.BinarySearch(names!, t, StringComparer.Ordinal)).ToArray();
        int[] Labels(Decoded f) => f.LabelText.Select(t => classOfText[t]).ToArray();

        int d = features.Length;
        var y = Labels(train);
        var trainSources = Sources(train);
        int[] trainRows, testRows;
        Decoded testFile;
        int[] yt;
        ExampleSource[] testSources;
        if (test is not null)
        {
            (trainRows, testRows, testFile, yt, testSources) = (Enumerable.Range(0, y.Length).ToArray(), Enumerable.Range(0, test.Lines.Length).ToArray(), test, Labels(test), Sources(test));
        }
        else
        {
            var (tr, te) = DataSource.StratifiedSplit(y, numClasses, spec.TestFraction, spec.SplitSeed);
            if (te.Length == 0) throw new InfluenceSharpException($"{path}: the test split is empty (too few rows per class for test-fraction {spec.TestFraction})");
            (trainRows, testRows, testFile, yt, testSources) = (tr, te, train, te.Select(i => y[i]).ToArray(), te.Select(i => trainSources[i]).ToArray());
            (y, trainSources) = (tr.Select(i => y[i]).ToArray(), tr.Select(i => trainSources[i]).ToArray());
            source = source.Set("test-fraction", spec.TestFraction.ToString("R", CultureInfo.InvariantCulture)).Set("split-seed", spec.SplitSeed.ToString(CultureInfo.InvariantCulture));
        }
        var (mean, std) = Statistics(train.Store, trainRows, d);
        Standardise(train, d, mean, std);
        if (test is not null) Standardise(test, d, mean, std);
        source = source.Set("label", labelColumn);
        return new DataSplit(new FloatDataset("csv-train", train.Store, trainRows, new[] { d }, y, numClasses, names).WithSources(trainSources),
            new FloatDataset("csv-test", testFile.Store, testRows, new[] { d }, yt, numClasses, names).WithSources(testSources), source.ToString())
        {
            Scaling = new FeatureScaling(features, mean, std),
        };
    }

    /// <summary>The header row, checked: named, distinct columns.</summary>
    static string[] Header(string path)
    {
        using var reader = Open(path);
        var first = Parse(reader, path).Select(r => r.Fields).FirstOrDefault()
            ?? throw new InfluenceSharpException($"{path}: empty file (a CSV table needs a header row and data rows)");
        var header = first.Select(h => h.Trim()).ToArray();
        for (int i = 0; i < header.Length; i++)
        {
            if (header[i].Length == 0) throw new InfluenceSharpException($"{path}: row 1 (header), column {i + 1} has no name");
            if (Array.IndexOf(header, header[i]) != i) throw new InfluenceSharpException($"{path}: row 1 (header): column '{header[i]}' appears twice");
        }
        return header;
    }

    static StreamReader Open(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try { return new StreamReader(path, Encoding.UTF8, detectEncodingFromByteOrderMarks: true, new FileStreamOptions { BufferSize = 1 << 16 }); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
    }

    /// <summary>Streams a file's data rows: each row's features (in <paramref name="features"/>'
    /// order, by header name) as float32 into a temporary file, its label text and its line.</summary>
    static Decoded Decode(string path, string[] features, string labelColumn, Dictionary<string, int> texts)
    {
        string file = Path.GetFileName(path);
        string tmp = Path.Combine(Path.GetTempPath(), $"influencesharp-csv-{Guid.NewGuid():N}.f32");
        var labelText = new List<int>();
        var lines = new List<int>();
        try
        {
            using (var output = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.Read | FileShare.Delete, 1 << 16))
            using (var reader = Open(path))
            {
                string[]? header = null;
                int li = -1;
                int[] cols = Array.Empty<int>();
                var row = new float[features.Length];
                try
                {
                    foreach (var (line, fields, _, _) in Parse(reader, path))
                    {
                        if (header is null)
                        {
                            header = fields.Select(h => h.Trim()).ToArray();
                            li = LabelIndex(path, header, labelColumn);
                            cols = features.Select(f => Array.IndexOf(header, f)).ToArray();
                            continue;
                        }
                        if (fields.Length != header.Length)
                            throw new InfluenceSharpException($"{file}: row {line} has {fields.Length} field(s) but the header has {header.Length} (ragged or truncated row; {path})");
                        string label = fields[li];
                        if (label.Trim().Length == 0) throw new InfluenceSharpException($"{file}: row {line}, column '{labelColumn}': empty label ({path})");
                        for (int j = 0; j < cols.Length; j++)
                        {
                            string cell = fields[cols[j]].Trim();
                            if (!double.TryParse(cell, NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
                                throw new InfluenceSharpException($"{file}: row {line}, column '{features[j]}': '{cell}' is not a number{(cell.Length == 0 ? " (empty cell)" : "")} ({path})");
                            if (!double.IsFinite(v) || Math.Abs(v) > float.MaxValue)
                                throw new InfluenceSharpException($"{file}: row {line}, column '{features[j]}': '{cell}' is not a finite number ({path})");
                            row[j] = (float)v;
                        }
                        output.Write(MemoryMarshal.AsBytes(row.AsSpan()));
                        if (!texts.TryGetValue(label, out var t)) texts[label] = t = texts.Count;
                        labelText.Add(t);
                        lines.Add(line);
                    }
                }
                catch (IOException e) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
            }
            if (lines.Count == 0) throw new InfluenceSharpException($"{path}: no data rows after the header");
            var store = new FilePixelStore(tmp, 0, 4L * features.Length, 4 * features.Length, lines.Count);
            return new Decoded(path, store, labelText.ToArray(), lines.ToArray());
        }
        catch
        {
            Unlink(tmp);
            throw;
        }
    }

    /// <summary>Per-feature mean and standard deviation of the given rows of a float32 store, in
    /// row order (the same sums as <see cref="Statistics(float[], int)"/> of those rows).</summary>
    static (double[] Mean, double[] Std) Statistics(PixelStore store, int[] rows, int d)
    {
        var mean = new double[d];
        var sq = new double[d];
        var x = new float[d];
        foreach (int r in rows) { store.Read(r, MemoryMarshal.AsBytes(x.AsSpan())); for (int j = 0; j < d; j++) mean[j] += x[j]; }
        for (int j = 0; j < d; j++) mean[j] /= rows.Length;
        foreach (int r in rows) { store.Read(r, MemoryMarshal.AsBytes(x.AsSpan())); for (int j = 0; j < d; j++) { double v = x[j] - mean[j]; sq[j] += v * v; } }
        return (mean, sq.Select(q => Math.Sqrt(q / rows.Length)).Select(q => q > 0 ? q : 1).ToArray());
    }

    /// <summary>Standardises every row of a decoded file in place, a block of rows at a time.</summary>
    static void Standardise(Decoded f, int d, double[] mean, double[] std)
    {
        int per = Math.Max(1, (1 << 20) / (4 * d));
        var block = new float[(long)per * d];
        using var handle = File.OpenHandle(f.Store.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
        for (long start = 0; start < f.Store.Count; start += per)
        {
            int n = (int)Math.Min(per, f.Store.Count - start);
            var span = block.AsSpan(0, n * d);
            f.Store.ReadRange(start, n, MemoryMarshal.AsBytes(span));
            Standardise(span, d, mean, std);
            RandomAccess.Write(handle, MemoryMarshal.AsBytes(span), start * 4 * d);
        }
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

    static void Standardise(Span<float> x, int d, double[] mean, double[] std)
    {
        for (int i = 0; i < x.Length; i++) x[i] = (float)((x[i] - mean[i % d]) / std[i % d]);
    }

    /// <summary>Each data row's source: its number under the header (1-based) and the line it starts on.</summary>
    static ExampleSource[] Sources(Decoded f) => f.Lines.Select((line, i) => ExampleSource.OfCsvRow(f.Path, i + 1, line)).ToArray();

    static int LabelIndex(string path, string[] header, string labelColumn)
    {
        int li = Array.IndexOf(header, labelColumn);
        if (li < 0) throw new InfluenceSharpException($"{path}: no label column '{labelColumn}' (columns: {string.Join(", ", header.Take(12))}{(header.Length > 12 ? ", ..." : "")}); choose it with --label-column");
        return li;
    }

    /// <summary>A CSV file's records (header included) with the line each starts on; blank lines are
    /// skipped. For reading result files (suspicious-*.csv, rankings, decisions).</summary>
    public static List<(int Line, string[] Fields)> ReadRecords(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try { return Records(File.ReadAllText(path, Encoding.UTF8), path).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
    }

    /// <summary>The file's records with the line each starts on; blank lines are skipped.</summary>
    static IEnumerable<(int Row, string[] Fields)> Records(string text, string path) => Spans(text, path).Select(r => (r.Row, r.Fields));

    /// <summary>The records of CSV text with the line each starts on and its span in the text
    /// [Start, End), its line break included; blank lines are skipped.</summary>
    public static IEnumerable<(int Row, string[] Fields, int Start, int End)> Spans(string text, string path) =>
        Parse(new StringReader(text), path).Select(r => (r.Row, r.Fields, checked((int)r.Start), checked((int)r.End)));

    /// <summary>The records read from <paramref name="reader"/> as they come, with the line each
    /// starts on and its span in characters [Start, End), its line break included; blank lines are
    /// skipped. A leading byte-order mark is not part of the first record.</summary>
    static IEnumerable<(int Row, string[] Fields, long Start, long End)> Parse(TextReader reader, string path)
    {
        int line = 1;
        long i = 0;
        int Peek() => reader.Peek();
        char Next() { i++; return (char)reader.Read(); }
        if (Peek() == '\uFEFF') Next();
        while (Peek() >= 0)
        {
            int start = line;
            long begin = i;
            var fields = new List<string>();
            var field = new StringBuilder();
            bool blank = true;
            while (true)
            {
                if (Peek() == '"' && field.Length == 0)
                {
                    blank = false;
                    Next();
                    while (true)
                    {
                        if (Peek() < 0) throw new InfluenceSharpException($"{Path.GetFileName(path)}: row {start}: a quoted field is not closed before the end of the file (truncated? {path})");
                        char c = Next();
                        if (c == '"')
                        {
                            if (Peek() == '"') { field.Append('"'); Next(); continue; }
                            break;
                        }
                        if (c == '\n') line++;
                        field.Append(c);
                    }
                }
                int p = Peek();
                if (p < 0 || p == '\n' || p == '\r')
                {
                    fields.Add(field.ToString());
                    if (Peek() == '\r') Next();
                    if (Peek() == '\n') Next();
                    line++;
                    break;
                }
                if (p == ',') { fields.Add(field.ToString()); field.Clear(); blank = false; Next(); continue; }
                if (!char.IsWhiteSpace((char)p)) blank = false;
                field.Append(Next());
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
