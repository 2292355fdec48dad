using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Scores;
using InfluenceSharp.Training;

namespace InfluenceSharp.Reporting;

/// <summary>The toolkit's standard figures, built from results.</summary>
public static class Figures
{
    /// <summary>Fraction of corrupted labels found vs fraction of data inspected, one curve per method,
    /// with the random-inspection diagonal.</summary>
    public static LinePlot DetectionCurves(IReadOnlyDictionary<string, DetectionResult> results)
    {
        var p = new LinePlot { Title = "Mislabeled data detection", XLabel = "fraction of training data inspected", YLabel = "fraction of mislabeled found", XMin = 0, XMax = 1, YMin = 0, YMax = 1 };
        int i = 0;
        foreach (var (name, r) in results) p.Add($"{name} (AUC {r.RocAuc:F3})", r.Inspected, r.Found, Rgb.Palette(i++));
        return p.AddDiagonal();
    }

    /// <summary>Distribution of self-influence for clean vs corrupted examples (clean in one colour, corrupted in another).</summary>
    public static Histogram SelfInfluenceDistribution(string method, IReadOnlyList<double> self, bool[] corrupted)
    {
        // log10 keeps the heavy right tail readable; self-influence is non-negative for these methods.
        double Log(double v) => Math.Log10(Math.Max(v, 1e-12));
        var h = new Histogram { Title = $"Self-influence ({method})", XLabel = "log10 self-influence", YLabel = "fraction of examples", Normalize = true, Bins = 50 };
        h.Add("clean", Enumerable.Range(0, self.Count).Where(i => !corrupted[i]).Select(i => Log(self[i])), Rgb.Palette(0));
        h.Add("corrupted", Enumerable.Range(0, self.Count).Where(i => corrupted[i]).Select(i => Log(self[i])), Rgb.Palette(3));
        return h;
    }

    /// <summary>The most self-influential training images with given (and, if known, true) labels;
    /// corrupted ones framed in red (the legend only when there is a corruption record).</summary>
    public static ImageGrid Suspicious(string method, LabeledDataset train, IReadOnlyList<double> self, CorruptionRecord? record,
        IReadOnlyList<string> classNames, int count = 24, int perRow = 12)
    {
        var truth = new Dictionary<int, int>();
        if (record is not null) for (int t = 0; t < record.Indices.Length; t++) truth[record.Indices[t]] = record.TrueLabels[t];
        var top = Enumerable.Range(0, self.Count).OrderByDescending(i => self[i]).Take(count).ToArray();
        var grid = new ImageGrid { Title = $"Most self-influential training examples ({method})" + (record is null ? "" : "; red = label was corrupted"), TextScale = 1 };
        for (int r = 0; r * perRow < top.Length; r++)
            grid.AddRow(r == 0 ? "top" : "", top.Skip(r * perRow).Take(perRow).Select(i =>
                GridImage.From(train, i, $"#{i} {Short(classNames[train.Labels[i]])}" + (truth.TryGetValue(i, out var tl) ? $"\nwas {Short(classNames[tl])}" : "") + SourceLine(train, i),
                    truth.ContainsKey(i) ? Rgb.Red : null)));
        return grid;
    }

    /// <summary>A caption's last line naming where example <paramref name="i"/> came from (file name, CSV
    /// row, tensor index), or "" when the data does not say.</summary>
    static string SourceLine(LabeledDataset data, int i) => data.SourceOf(i) is { } src ? "\n" + src.Short : "";

    /// <summary>A query with its strongest proponents and opponents.</summary>
    public static ImageGrid Explanation(string method, LabeledDataset queries, int queryIndex, string queryCaption, LabeledDataset train,
        TopKResult top, int row, IReadOnlyList<string> classNames, CorruptionRecord? record = null)
    {
        var corrupted = record is null ? new HashSet<int>() : record.Indices.ToHashSet();
        GridImage Train(int i, double s) => GridImage.From(train, i, $"#{i} {Short(classNames[train.Labels[i]])}\n{s:G3}" + SourceLine(train, i), corrupted.Contains(i) ? Rgb.Red : null);
        return new ImageGrid { Title = $"{method}: query {queryCaption}", TextScale = 1 }
            .AddRow("query", new[] { GridImage.From(queries, queryIndex, $"{queryCaption}\n{Short(classNames[queries.Labels[queryIndex]])}" + SourceLine(queries, queryIndex)) })
            .AddRow("proponents", top.Proponents[row].Zip(top.ProponentScores[row]).Select(p => Train(p.First, p.Second)))
            .AddRow("opponents", top.Opponents[row].Zip(top.OpponentScores[row]).Select(p => Train(p.First, p.Second)));
    }

    /// <summary>Training curves (loss and accuracy per epoch) from checkpoint metrics.</summary>
    public static LinePlot TrainingCurves(IReadOnlyList<EpochMetrics> history)
    {
        var p = new LinePlot { Title = "Training", XLabel = "epoch", YLabel = "loss / accuracy", YMin = 0 };
        p.Add("train loss", history.Select(h => h.TrainLoss).ToList(), Rgb.Palette(0));
        p.Add("test loss", history.Select(h => h.TestLoss).ToList(), Rgb.Palette(1));
        p.Add("train accuracy", history.Select(h => h.TrainAccuracy).ToList(), Rgb.Palette(2), dashed: true);
        p.Add("test accuracy", history.Select(h => h.TestAccuracy).ToList(), Rgb.Palette(3), dashed: true);
        return p;
    }

    /// <summary>A class name as shown in a caption: whole (the grid widens or wraps captions to fit).</summary>
    static string Short(string s) => s;
}
