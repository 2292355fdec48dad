using System.Globalization;
using System.Runtime.CompilerServices;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Reporting;
using InfluenceSharp.Methods;
using InfluenceSharp.Scores;
using Microsoft.DotNet.Interactive.Formatting;

namespace InfluenceSharp.Notebooks;

/// <summary>Notebook views of InfluenceSharp results. Each returns an object that a .NET Interactive
/// notebook displays as HTML (tables, inline images); the reporting library's figures
/// (<see cref="Plot"/>, <see cref="ImageGrid"/>, <see cref="Canvas"/>) display as inline PNGs once this
/// package is loaded.</summary>
public static class Notebook
{
    static int registered;

    /// <summary>Registers the formatters of the library's own result types (plots, image grids,
    /// detection results). Runs by itself when the package is loaded into a notebook (and when this
    /// assembly is first used); calling it again does nothing.</summary>
    public static void RegisterFormatters()
    {
        if (Interlocked.Exchange(ref registered, 1) == 1) return;
        Formatter.Register(new HtmlFormatter<Plot>((p, c) => c.Writer.Write(Html.Image(p.ToPng(), Math.Min(p.Width, 720)))));
        Formatter.Register(new HtmlFormatter<ImageGrid>((g, c) => c.Writer.Write(Html.Image(g.ToPng()))));
        Formatter.Register(new HtmlFormatter<Canvas>((v, c) => c.Writer.Write(Html.Image(v.ToPng()))));
        Formatter.Register(new HtmlFormatter<DetectionResult>((r, c) => c.Writer.Write(Html.Detection(new DetectionView(new Dictionary<string, DetectionResult> { ["ranking"] = r })))));
        Formatter.SetPreferredMimeTypesFor(typeof(Plot), "text/html");
        Formatter.SetPreferredMimeTypesFor(typeof(ImageGrid), "text/html");
        Formatter.SetPreferredMimeTypesFor(typeof(Canvas), "text/html");
        Formatter.SetPreferredMimeTypesFor(typeof(DetectionResult), "text/html");
    }

#pragma warning disable CA2255 // a library module initializer: the formatters must exist before the first display
    [ModuleInitializer]
    internal static void OnLoad() => RegisterFormatters();
#pragma warning restore CA2255

    /// <summary>Detection results of several methods: found-at table, ROC AUC and the curves.</summary>
    public static DetectionView Detection(IReadOnlyDictionary<string, DetectionResult> results) => new(results);

    /// <summary>The <paramref name="top"/> training examples with the highest self-influence: image,
    /// rank, score, given label (and predicted, true label when known) and source.</summary>
    public static ExampleGrid SelfInfluence(LabeledDataset train, IReadOnlyList<double> selfInfluence, int top = 24, int[]? predicted = null,
        CorruptionRecord? corruption = null, string method = "")
    {
        if (selfInfluence.Count != train.Count)
            throw new InfluenceSharpException($"{selfInfluence.Count} self-influence scores for {train.Count} training examples");
        var truth = TrueLabels(corruption);
        var order = Enumerable.Range(0, train.Count).OrderByDescending(i => selfInfluence[i]).ThenBy(i => i).Take(top).ToList();
        return new ExampleGrid($"Highest self-influence{(method.Length > 0 ? $" ({method})" : "")}: {order.Count} of {train.Count}",
            order.Select((i, r) => Card(train, i, $"{r + 1}. #{i}", selfInfluence[i], predicted, truth)).ToList());
    }

    /// <summary>Query <paramref name="row"/> of a top-k result with its proponents and opponents.</summary>
    public static AttributionView Explanation(TopKResult result, int row, LabeledDataset queries, LabeledDataset train,
        string method = "", int[]? predicted = null, CorruptionRecord? corruption = null, int? queryIndex = null)
    {
        int q = queryIndex ?? row;
        var truth = TrueLabels(corruption);
        ExampleGrid Side(string name, int[] idx, double[] scores) =>
            new($"{name} ({idx.Length})", idx.Zip(scores).Select(p => Card(train, p.First, $"#{p.First}", p.Second, predicted, truth)).ToList());
        return new AttributionView($"{(method.Length > 0 ? method + ": " : "")}query {q}",
            Card(queries, q, $"query #{q}", null, null, new Dictionary<int, int>()),
            Side("proponents", result.Proponents[row], result.ProponentScores[row]),
            Side("opponents", result.Opponents[row], result.OpponentScores[row]));
    }

    /// <summary>Any examples of a data set, in the order given.</summary>
    public static ExampleGrid Examples(LabeledDataset data, IEnumerable<int> indices, string title = "", int[]? predicted = null) =>
        new(title, indices.Select(i => Card(data, i, $"#{i}", null, predicted, new Dictionary<int, int>())).ToList());

    static Dictionary<int, int> TrueLabels(CorruptionRecord? corruption)
    {
        var truth = new Dictionary<int, int>();
        if (corruption is { } rec) for (int t = 0; t < rec.Indices.Length; t++) truth[rec.Indices[t]] = rec.TrueLabels[t];
        return truth;
    }

    static ExampleCard Card(LabeledDataset data, int i, string title, double? score, int[]? predicted, Dictionary<int, int> truth)
    {
        var lines = new List<string>();
        if (score is { } s) lines.Add("score " + s.ToString("G4", CultureInfo.InvariantCulture));
        lines.Add("label: " + data.ClassName(data.Labels[i]));
        if (predicted is not null) lines.Add("predicted: " + data.ClassName(predicted[i]));
        if (truth.TryGetValue(i, out var t)) lines.Add("flipped; true: " + data.ClassName(t));
        if (data.SourceOf(i) is { } src) lines.Add(src.Text);
        return new ExampleCard(Png(data, i), title, lines, truth.ContainsKey(i));
    }

    /// <summary>Example <paramref name="i"/> as a PNG (null for tabular data).</summary>
    public static byte[]? Png(LabeledDataset data, int i)
    {
        return PngWriter.EncodeExample(data, i);
    }
}
