using System.Globalization;

namespace InfluenceSharp.Data;

/// <summary>What kind of place an example was read from.</summary>
public enum ExampleSourceKind
{
    /// <summary>An image file of an image folder.</summary>
    File,
    /// <summary>A data row of a CSV table.</summary>
    CsvRow,
    /// <summary>An index into a tensor of a tensors: file (safetensors, npz, npy).</summary>
    TensorIndex,
    /// <summary>An index into an IDX or CIFAR-10 file, or into the embedded data.</summary>
    ArrayIndex,
    /// <summary>An entry of a text file of entries (the fortune format: entries between '%' lines).</summary>
    TextEntry,
}

/// <summary>
/// Where one example of a data set came from, so that a result naming training example i can be
/// traced to the file or row a user has. <see cref="Origin"/> is the image folder, CSV file, tensor
/// file or IDX file (absolute path; "embedded:..." for the embedded data).
/// <list type="bullet">
/// <item><see cref="ExampleSourceKind.File"/>: <see cref="Name"/> is the image's path relative to the
/// folder, with '/' separators (<c>train/cat/001.png</c> in a train/test layout).</item>
/// <item><see cref="ExampleSourceKind.CsvRow"/>: <see cref="Number"/> is the data row, 1-based with the
/// header not counted (the first row under the header is 1); <see cref="Line"/> is the file line the
/// row starts on (the header is line 1), which the CSV reader's error messages call the row.</item>
/// <item><see cref="ExampleSourceKind.TensorIndex"/>: <see cref="Name"/> is the tensor's name and
/// <see cref="Number"/> the 0-based index along its first axis (as Python's <c>X[i]</c>).</item>
/// <item><see cref="ExampleSourceKind.ArrayIndex"/>: <see cref="Number"/> is the 0-based index in the file.</item>
/// <item><see cref="ExampleSourceKind.TextEntry"/>: <see cref="Number"/> is the entry, 1-based in the file's
/// order; <see cref="Line"/> is the file line its text starts on.</item>
/// </list>
/// </summary>
public sealed record ExampleSource(ExampleSourceKind Kind, string Origin, string? Name, int Number, int Line = 0)
{
    public static ExampleSource OfFile(string folder, string relativePath) =>
        new(ExampleSourceKind.File, folder, relativePath.Replace('\\', '/'), -1);

    public static ExampleSource OfCsvRow(string file, int row, int line) => new(ExampleSourceKind.CsvRow, file, null, row, line);

    public static ExampleSource OfTensor(string file, string tensor, int index) => new(ExampleSourceKind.TensorIndex, file, tensor, index);

    public static ExampleSource OfArray(string file, int index) => new(ExampleSourceKind.ArrayIndex, file, null, index);

    public static ExampleSource OfTextEntry(string file, int entry, int line) => new(ExampleSourceKind.TextEntry, file, null, entry, line);

    /// <summary>Sources 0..n−1 of an array file (IDX, CIFAR-10, the embedded data).</summary>
    public static ExampleSource[] Indices(string file, int n) => Enumerable.Range(0, n).Select(i => OfArray(file, i)).ToArray();

    /// <summary>The file name of <see cref="Origin"/> (the part after the last separator).</summary>
    public string OriginName => Origin.StartsWith("embedded:", StringComparison.Ordinal) ? Origin : Path.GetFileName(Origin.TrimEnd('/', '\\'));

    /// <summary>The text printed in result files: <c>cat/001.png</c>, <c>people.csv row 5 (line 6)</c>,
    /// <c>prepared.npz X[12]</c>, <c>train-images-idx3-ubyte.gz #12</c>.</summary>
    public string Text => Kind switch
    {
        ExampleSourceKind.File => Name!,
        ExampleSourceKind.CsvRow => string.Create(CultureInfo.InvariantCulture, $"{OriginName} row {Number} (line {Line})"),
        ExampleSourceKind.TensorIndex => string.Create(CultureInfo.InvariantCulture, $"{OriginName} {Name}[{Number}]"),
        ExampleSourceKind.TextEntry => string.Create(CultureInfo.InvariantCulture, $"{OriginName} entry {Number} (line {Line})"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{OriginName} #{Number}"),
    };

    /// <summary>A short form for image captions: the file name, <c>row 5</c>, <c>X[12]</c>, <c>idx 12</c>.</summary>
    public string Short => Kind switch
    {
        ExampleSourceKind.File => Path.GetFileName(Name!),
        ExampleSourceKind.CsvRow => string.Create(CultureInfo.InvariantCulture, $"row {Number}"),
        ExampleSourceKind.TensorIndex => string.Create(CultureInfo.InvariantCulture, $"{Name}[{Number}]"),
        ExampleSourceKind.TextEntry => string.Create(CultureInfo.InvariantCulture, $"{OriginName} #{Number}"),
        _ => string.Create(CultureInfo.InvariantCulture, $"idx {Number}"),
    };

    /// <summary>The image file's absolute path (<see cref="ExampleSourceKind.File"/> only).</summary>
    public string? FullPath => Kind == ExampleSourceKind.File ? Path.Combine(Origin, Name!.Replace('/', Path.DirectorySeparatorChar)) : null;

    public override string ToString() => Text;
}

/// <summary>Writing and naming example sources in result files.</summary>
public static class SourceText
{
    /// <summary>A CSV field: quoted (with quotes doubled) when it holds a comma, a quote or a line break.</summary>
    public static string Csv(string text) =>
        text.AsSpan().IndexOfAny(",\"\n\r") < 0 ? text : "\"" + text.Replace("\"", "\"\"") + "\"";

    /// <summary>The source text of example <paramref name="index"/> of <paramref name="data"/>, or "" when unknown.</summary>
    public static string Of(LabeledDataset data, int index) => data.SourceOf(index)?.Text ?? "";

    /// <summary>A caption line: the short source of example <paramref name="index"/>, or null when unknown.</summary>
    public static string? Caption(LabeledDataset data, int index) => data.SourceOf(index)?.Short;

    /// <summary>The source as JSON-friendly fields (kind, text, file or row), null when unknown.</summary>
    public static object? Json(LabeledDataset data, int index) => data.SourceOf(index) is not { } s ? null : s.Kind switch
    {
        ExampleSourceKind.File => new { kind = "file", text = s.Text, path = s.Name },
        ExampleSourceKind.CsvRow => new { kind = "csv-row", text = s.Text, file = s.OriginName, row = s.Number, line = s.Line },
        ExampleSourceKind.TensorIndex => new { kind = "tensor-index", text = s.Text, file = s.OriginName, tensor = s.Name, index = s.Number },
        ExampleSourceKind.TextEntry => new { kind = "text-entry", text = s.Text, file = s.OriginName, entry = s.Number, line = s.Line },
        _ => (object)new { kind = "array-index", text = s.Text, file = s.OriginName, index = s.Number },
    };
}
