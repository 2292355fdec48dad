using System.Text.Json.Nodes;
using InfluenceSharp.Data;
using InfluenceSharp.Reporting;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>Results as a new user reads them: a health line after training and a warning before
/// attributing an under-trained model; detection results of several invocations kept together;
/// a report of a run without corrupted labels that says only what applies; the detection default
/// that the method guide recommends; class names shown whole in image grids.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class NewUserResultsTests
{
    static readonly string[] Quick = { "--model", "mlp", "--widths", "16", "--train-count", "300", "--threads", "1" };

    static string TrainRun(TempDir dir, string name, int epochs, params string[] more)
    {
        string run = dir.File(name);
        var r = CliRunner.Run(new[] { "train", "--out", run, "--epochs", epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--quiet" }.Concat(Quick).Concat(more).ToArray());
        Assert.True(r.Code == 0, r.Err);
        return run;
    }

    static EpochMetrics M(double loss, double trainAcc = 0.8, double testAcc = 0.75) => new(loss, trainAcc, loss * 1.1, testAcc, 1);

    [Fact]
    public void HealthTellsFallingLevellingRisingAndNearChance()
    {
        var falling = TrainingHealth.Assess(new[] { M(1.8), M(1.35) }, 10)!;
        Assert.Equal(LossTrend.Falling, falling.Trend);
        Assert.True(falling.UnderTrained);
        Assert.Contains("--epochs 7", falling.Advice);
        Assert.Contains("training loss still falling (-25.0% in the last epoch)", falling.Describe());

        var level = TrainingHealth.Assess(new[] { M(0.6), M(0.45), M(0.445) }, 10)!;
        Assert.Equal(LossTrend.Levelling, level.Trend);
        Assert.False(level.UnderTrained);
        Assert.Null(level.Advice);

        // Slowly falling (5% per epoch, as a one-cycle run's last epochs): not under-trained.
        Assert.False(TrainingHealth.Assess(new[] { M(0.42), M(0.40) }, 10)!.UnderTrained);

        var rising = TrainingHealth.Assess(new[] { M(0.9), M(0.5), M(0.7), M(0.8) }, 10)!;
        Assert.True(rising.Unstable);
        Assert.False(rising.UnderTrained);
        Assert.Contains("lower --lr", rising.Advice);

        var chance = TrainingHealth.Assess(new[] { M(2.3, 0.11, 0.12), M(2.29, 0.11, 0.12) }, 10)!;
        Assert.True(chance.UnderTrained);

        var converged = TrainingHealth.Assess(new[] { M(0.3) }, 10, converged: true)!;
        Assert.False(converged.UnderTrained);
        Assert.Contains("trained to convergence", converged.Describe());
        Assert.Null(TrainingHealth.Assess(Array.Empty<EpochMetrics>(), 10));
    }

    [Fact]
    public void TrainEndsWithAHealthLineAndAttributionWarnsOnAnUnderTrainedModel()
    {
        using var dir = new TempDir();
        string run = dir.File("short");
        var r = CliRunner.Run(new[] { "train", "--out", run, "--epochs", "2", "--quiet" }.Concat(Quick).ToArray());
        Assert.True(r.Code == 0, r.Err);
        var health = TrainingHealth.Assess(RunRecord.TryRead(run)!.History, 10)!;
        Assert.True(health.UnderTrained, health.Describe());   // two epochs of 300 images: the loss still falls fast
        Assert.Contains("health: train accuracy ", r.Out);
        Assert.Contains("training loss still falling", r.Out);
        Assert.Contains("health: the model looks under-trained", r.Out);
        Assert.Contains("--epochs", r.Out);

        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "tracin-last", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains($"warning: {run}: the model looks under-trained", r.Err);
        Assert.Contains("train longer (e.g. --epochs", r.Err);
        // --quiet: no warning.
        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "tracin-last", "--threads", "1", "--quiet");
        Assert.DoesNotContain("warning", r.Err);

        // A model trained to convergence gets no warning.
        string converged = dir.File("converged");
        r = CliRunner.Run("train", "--out", converged, "--model", "logreg", "--lbfgs-tol", "1e-3", "--weight-decay", "1e-2", "--train-count", "300", "--threads", "1", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("health: ", r.Out);
        Assert.DoesNotContain("under-trained", r.Out);
        r = CliRunner.Run("detect-mislabeled", "--run", converged, "--methods", "tracin-last", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.DoesNotContain("under-trained", r.Err);
    }

    static List<string> DetectionMethods(string run) =>
        JsonNode.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")))!.AsArray().Select(n => n!["method"]!.GetValue<string>()).ToList();

    [Fact]
    public void DetectionResultsAreMergedByMethodAndTheReportShowsAll()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir, "run", 3, "--corrupt", "0.1");
        Assert.Equal(0, CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "tracin-last,identity", "--threads", "1", "--quiet").Code);
        var first = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")))!.AsArray();
        var identityBefore = first.Single(n => n!["method"]!.GetValue<string>() == "identity")!["roc_auc"]!.GetValue<double>();
        Assert.Equal(0, CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "graddot", "--threads", "1", "--quiet").Code);
        Assert.Equal(new[] { "tracin-last", "identity", "graddot" }, DetectionMethods(run));
        // The same method again: its entry is replaced (newest wins), not repeated.
        Assert.Equal(0, CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "identity", "--threads", "1", "--quiet").Code);
        Assert.Equal(new[] { "tracin-last", "graddot", "identity" }, DetectionMethods(run));
        var again = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")))!.AsArray();
        Assert.Equal(identityBefore, again.Single(n => n!["method"]!.GetValue<string>() == "identity")!["roc_auc"]!.GetValue<double>(), 12);

        Assert.Equal(0, CliRunner.Run("report", "--run", run).Code);
        var html = File.ReadAllText(Path.Combine(run, "report.html"));
        foreach (var m in new[] { "tracin-last", "identity", "graddot" }) Assert.Contains($"<td>{m}</td>", html);
        Assert.Contains("<td>corrupted labels</td>", html);
        Assert.Contains("ROC AUC", html);
    }

    [Fact]
    public void AReportWithoutACorruptionRecordShowsOnlyWhatApplies()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir, "clean", 2);
        var r = CliRunner.Run("detect-mislabeled", "--run", run, "--threads", "1", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(new[] { "ekfac-last" }, DetectionMethods(run));   // the method guide's detection method
        Assert.Equal(0, CliRunner.Run("report", "--run", run).Code);
        var html = File.ReadAllText(Path.Combine(run, "report.html"));
        Assert.DoesNotContain("<td>corrupted labels</td>", html);
        Assert.DoesNotContain("ROC AUC", html);
        Assert.DoesNotContain("<th>10%</th>", html);
        Assert.Contains("<td>ekfac-last</td>", html);
        Assert.Contains("no record of corrupted labels", html);

        var data = Embedded.Split.Train.Subset(Enumerable.Range(0, 30).ToArray());
        var self = Enumerable.Range(0, 30).Select(i => (double)(i * 7 % 30)).ToArray();
        var names = new[] { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };
        Assert.DoesNotContain("red = label was corrupted", Figures.Suspicious("m", data, self, null, names, 12).Title);
        var record = new CorruptionRecord(0.1, 0, new[] { 3 }, new[] { data.Labels[3] }, new[] { (data.Labels[3] + 1) % 10 });
        Assert.Contains("red = label was corrupted", Figures.Suspicious("m", data.WithLabels(data.Labels), self, record, names, 12).Title);
    }

    [Fact]
    public void GridCaptionsKeepWholeClassNames()
    {
        var data = Embedded.Split.Train;
        int boot = Enumerable.Range(0, data.Count).First(i => data.Labels[i] == 9);
        var sub = data.Subset(new[] { boot });
        var names = new[] { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };
        var grid = Figures.Suspicious("m", sub, new[] { 1.0 }, null, names, 1);
        Assert.Contains("Ankle boot", grid.Images.Single().Caption);
        grid.ToPng();

        // A name far wider than a cell is wrapped, every piece fits, nothing is lost.
        string longName = "golden_retriever_puppy_on_a_lawn";
        int cell = Canvas.MeasureText("#12345 Sneaker", 1).Width;
        var lines = ImageGrid.WrappedCaption($"#7 {longName}", cell, 1);
        Assert.True(lines.Length > 1);
        Assert.All(lines, l => Assert.True(Canvas.MeasureText(l, 1).Width <= cell, $"'{l}' is wider than the cell"));
        Assert.Equal($"#7{longName}", string.Concat(lines).Replace(" ", ""));
    }
}
