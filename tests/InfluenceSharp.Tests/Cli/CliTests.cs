using InfluenceSharp.Scores;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>The `influence` command end to end, in process: exit codes, outputs, and refusals.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class CliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    [Fact]
    public void BadArgumentsAndMissingFilesGiveClearErrorsAndNonZeroExit()
    {
        using var dir = new TempDir();
        var r = Run("train", "--out", dir.File("x"), "--epochs", "two");
        Assert.Equal(2, r.Code); Assert.Contains("--epochs", r.Err);
        r = Run("train", "--out", dir.File("x"), "--bogus", "1");
        Assert.Equal(2, r.Code); Assert.Contains("--bogus", r.Err);
        r = Run("train", "--out", dir.File("x"), "--data", dir.File("nowhere"));
        Assert.Equal(1, r.Code); Assert.Contains("nowhere", r.Err);
        r = Run("fit-factors", "--run", dir.File("missing-run"), "--out", dir.File("f"));
        Assert.Equal(1, r.Code); Assert.Contains("missing-run", r.Err);
        Assert.StartsWith("influence: error: ", r.Err);
        Assert.DoesNotContain(" at ", r.Err);                 // no stack trace
        // A directory that already holds another run's checkpoints is refused unless --overwrite.
        Directory.CreateDirectory(dir.File("used"));
        File.WriteAllText(Path.Combine(dir.File("used"), "epoch-0009.safetensors"), "old");
        r = Run("train", "--out", dir.File("used"), "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100");
        Assert.Equal(1, r.Code); Assert.Contains("--overwrite", r.Err);
        r = Run("train", "--out", dir.File("used"), "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "100", "--overwrite");
        Assert.Equal(0, r.Code);
        Assert.False(File.Exists(Path.Combine(dir.File("used"), "epoch-0009.safetensors")));
        r = Run("frobnicate");
        Assert.Equal(2, r.Code);
        Assert.False(Directory.Exists(dir.File("f")));
    }

    [Fact]
    public void TrainFitScoreEndToEndAndRefuseFactorsFromAnotherCheckpoint()
    {
        using var dir = new TempDir();
        string run = dir.File("run"), factors = dir.File("factors"), scores = dir.File("scores"), self = dir.File("self");
        var r = Run("train", "--data", "embedded", "--model", "logreg", "--epochs", "2", "--train-count", "600", "--corrupt", "0.1", "--out", run);
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("test accuracy", r.Out);
        Assert.True(File.Exists(Path.Combine(run, "corruption.json")));

        r = Run("fit-factors", "--run", run, "--strategy", "kfac", "--out", factors, "--partition-size", "250");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("Fit Covariance", r.Err);        // the profiler table

        r = Run("scores", "pairwise", "--run", run, "--factors", factors, "--out", scores, "--query-count", "7", "--measure", "margin");
        Assert.True(r.Code == 0, r.Err);
        using (var m = Npy.Read(Path.Combine(scores, "scores.npy")))
            Assert.Equal(new long[] { 7, 600 }, m.shape);

        r = Run("scores", "self", "--run", run, "--factors", factors, "--out", self, "--partition-size", "200");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(600, PartitionedScoring.ReadVector(Path.Combine(self, "self_influence.npy")).Length);

        // TracIn over both checkpoints: build the store once, then score from it.
        r = Run("build-store", "--run", run, "--methods", "tracin-last", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("store complete", r.Out);
        Assert.Equal("", r.Err);                               // --quiet: no progress, no profiler table
        r = Run("scores", "pairwise", "--run", run, "--method", "tracin-last", "--out", dir.File("tl"), "--query-count", "5");
        Assert.True(r.Code == 0, r.Err);
        using (var m = Npy.Read(Path.Combine(dir.File("tl"), "scores.npy")))
            Assert.Equal(new long[] { 5, 600 }, m.shape);
        r = Run("detect-mislabeled", "--run", run, "--methods", "tracin-last,kfac");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("tracin-last", r.Out);
        Assert.True(File.Exists(Path.Combine(run, "detect", "detection-curve.png")));

        // LDS and removal through the CLI (tiny: 6 subsets, 2 seeds); LDS results accumulate per method.
        r = Run("evaluate", "lds", "--run", run, "--methods", "kfac", "--subsets", "6", "--query-count", "10", "--epochs", "1");
        Assert.True(r.Code == 0, r.Err);
        r = Run("evaluate", "lds", "--run", run, "--methods", "tracin", "--subsets", "6", "--query-count", "10", "--epochs", "1");
        Assert.True(r.Code == 0, r.Err);
        var lds = File.ReadAllText(Path.Combine(run, "lds", "lds-results.json"));
        Assert.Contains("\"kfac\"", lds); Assert.Contains("\"tracin\"", lds);
        // Each row keeps its per-query correlations, whose mean is the LDS (an undefined one, NaN, counts as 0).
        foreach (var row in System.Text.Json.JsonDocument.Parse(lds).RootElement.EnumerateArray())
        {
            var perQuery = row.GetProperty("per_query").EnumerateArray().Select(v => v.ValueKind == System.Text.Json.JsonValueKind.Number ? v.GetDouble() : 0).ToArray();
            Assert.Equal(10, perQuery.Length);
            Assert.Equal(row.GetProperty("lds").GetDouble(), perQuery.Average(), 12);
        }
        r = Run("evaluate", "remove", "--run", run, "--method", "kfac", "--remove-counts", "20", "--seeds", "0,1", "--query-count", "5", "--epochs", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("Helpful", r.Out);
        Assert.True(File.Exists(Path.Combine(run, "remove", "removal.png")));
        // What each setting removed, with the examples' sources (here: indices of the embedded IDX file).
        var removed = File.ReadAllLines(Path.Combine(run, "remove", "removed.csv"));
        Assert.Equal("kind,k,rank,index,summed_score,label,source", removed[0]);
        Assert.Equal(1 + 3 * 20, removed.Length);
        Assert.Contains(",embedded:train-images-idx3-ubyte.gz #", removed[1]);

        // The report: well-formed (XHTML) and holding every section, with the detection plots embedded.
        r = Run("explain", "--run", run, "--query", "0,3", "--method", "identity", "--top", "4");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("proponents", r.Out);
        string ExplainJson() => File.ReadAllText(Path.Combine(run, "explain", "explain-identity.json"));
        int[] Proponents() => System.Text.Json.JsonDocument.Parse(ExplainJson()).RootElement[0].GetProperty("proponents")
            .EnumerateArray().Select(p => p.GetProperty("index").GetInt32()).ToArray();
        var fromIndex = Proponents();
        // The same test image given as a PNG file gets the same proponents.
        var test0 = Embedded.Split.Test;
        InfluenceSharp.Reporting.PngWriter.Save(dir.File("q.png"), ((InfluenceSharp.Data.ImageDataset)test0).Pixels.AsSpan(0, 784), 28, 28, 1);
        r = Run("explain", "--run", run, "--query-image", dir.File("q.png"), "--query-label", test0.Labels[0].ToString(), "--method", "identity", "--top", "4");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(fromIndex, Proponents());
        File.WriteAllBytes(dir.File("bad.png"), new byte[] { 1, 2, 3 });
        r = Run("explain", "--run", run, "--query-image", dir.File("bad.png"), "--method", "identity");
        Assert.Equal(1, r.Code); Assert.Contains("bad.png", r.Err);

        r = Run("report", "--run", run, "--out", dir.File("report"));
        Assert.True(r.Code == 0, r.Err);
        var html = File.ReadAllText(Path.Combine(dir.File("report"), "report.html"));
        var xml = new System.Xml.XmlDocument { XmlResolver = null };
        xml.LoadXml(System.Text.RegularExpressions.Regex.Replace(html, "^<!DOCTYPE[^>]*>", ""));
        var headings = xml.SelectNodes("//*[local-name()='h2']")!.Cast<System.Xml.XmlNode>().Select(n => n.InnerText.Trim()).ToList();
        foreach (var title in InfluenceSharp.Cli.Commands.ReportCommand.SectionTitles) Assert.Contains(title, headings);
        Assert.True(System.Text.RegularExpressions.Regex.Matches(html, "data:image/png;base64,").Count >= 5);

        // Factors of epoch 2 used with the epoch-1 checkpoint: refused, nothing written.
        r = Run("scores", "self", "--run", run, "--checkpoint", "epoch-0001.safetensors", "--factors", factors, "--out", dir.File("bad"));
        Assert.Equal(1, r.Code);
        Assert.Contains("another checkpoint", r.Err);
        Assert.False(File.Exists(Path.Combine(dir.File("bad"), "self_influence.npy")));
    }
}
