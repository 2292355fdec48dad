using System.Text.Json;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`evaluate lds --query-offset K`: the queries are test examples K..K+N−1 (the retrainings do
/// not depend on them, so their margins must be the offset columns of a cache from 0), the offset is
/// recorded, a cache made with another offset is refused naming it, and bad offsets are usage errors.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class LdsQueryOffsetCliTests
{
    static double[] Margins(string cache, int subset)
    {
        using var f = SafeTensors.Load(Path.Combine(cache, $"subset-{subset:D5}.safetensors"));
        return f["margins"].data<double>().ToArray();   // [seeds = 1, queries]
    }

    static JsonElement Json(string path)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(path));
        return doc.RootElement.Clone();
    }

    [Fact]
    public void OffsetPicksTheTestExamplesAndIsRecordedAndChecked()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--out", run, "--model", "logreg", "--epochs", "1", "--train-count", "60", "--seed", "3", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        string from0 = dir.File("lds0"), from2 = dir.File("lds2");
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", from0, "--methods", "identity", "--subsets", "3", "--query-count", "5", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", from2, "--methods", "identity", "--subsets", "3", "--query-count", "3", "--query-offset", "2", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("3 queries (2..4)", r.Out);

        // Same subsets and training seeds: queries 2..4 of the first cache are queries 0..2 of the second.
        for (int j = 0; j < 3; j++)
        {
            double[] a = Margins(from0, j), b = Margins(from2, j);
            Assert.Equal(5, a.Length); Assert.Equal(3, b.Length);
            for (int q = 0; q < 3; q++) Assert.Equal(a[q + 2], b[q], 1e-5);
            Assert.NotEqual(a[0], b[0], 1e-3);   // not the first test examples
        }
        Assert.Equal(2, Json(Path.Combine(from2, "lds.json")).GetProperty("query_offset").GetInt32());
        Assert.False(Json(Path.Combine(from0, "lds.json")).TryGetProperty("query_offset", out _));   // 0: as written before offsets
        var row = Json(Path.Combine(from2, "lds-results.json")).EnumerateArray().Single();
        Assert.Equal(2, row.GetProperty("query_offset").GetInt32());
        Assert.Equal(3, row.GetProperty("queries").GetInt32());

        // A cache is never read for other queries: the error names the offset both ways.
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", from2, "--methods", "identity", "--subsets", "3", "--query-count", "3", "--quiet", "--threads", "1");
        Assert.Equal(1, r.Code); Assert.Contains("'query_offset' is 2 there but 0 now", r.Err); Assert.Contains("--query-offset 2", r.Err);
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", from0, "--methods", "identity", "--subsets", "3", "--query-count", "5", "--query-offset", "1", "--quiet", "--threads", "1");
        Assert.Equal(1, r.Code); Assert.Contains("'query_offset' is 0 there but 1 now", r.Err);
        Assert.Equal(3, Directory.GetFiles(from0, "subset-*.safetensors").Length);   // nothing retrained or removed

        // Usage errors, before any directory is made.
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", dir.File("neg"), "--query-offset", "-1", "--subsets", "3", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--query-offset", r.Err);
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--out", dir.File("past"), "--query-offset", "1000000", "--query-count", "3", "--subsets", "3", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--query-offset 1000000", r.Err); Assert.Contains("past its end", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.False(Directory.Exists(dir.File("past")));
    }
}
