using System.Text.Json;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`influence index build` and `explain --index` end to end, in process.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class IndexCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static List<int> Proponents(string json, string query) =>
        JsonDocument.Parse(File.ReadAllText(json)).RootElement.EnumerateArray().Single(e => e.GetProperty("query").GetString() == query)
            .GetProperty("proponents").EnumerateArray().Select(p => p.GetProperty("index").GetInt32()).ToList();

    [Fact]
    public void IndexBuildThenExplainWithTheIndexProbingAllListsMatchesTheExactExplainAndAStaleIndexIsRefused()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = Run("train", "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "400", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);

        // Usage errors before any work: --probe without --index, --index with a method that has no index, --lists > rows.
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0", "--probe", "3");
        Assert.Equal(2, r.Code); Assert.Contains("--probe", r.Err);
        r = Run("explain", "--run", run, "--methods", "ekfac", "--query", "0", "--index");
        Assert.Equal(2, r.Code); Assert.Contains("--index: method ekfac", r.Err);
        r = Run("index", "build", "--run", run, "--methods", "ekfac");
        Assert.Equal(2, r.Code); Assert.Contains("--methods", r.Err);
        r = Run("index", "build", "--run", run, "--methods", "trak", "--lists", "401", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--lists 401", r.Err);
        // Explain with --index before the index exists: a clear error.
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0", "--index", "--quiet");
        Assert.Equal(1, r.Code); Assert.Contains("index build", r.Err);

        r = Run("index", "build", "--run", run, "--methods", "trak", "--lists", "8", "--index-seed", "2", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("in 8 lists", r.Out);
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0,1,2", "--top", "5", "--out", dir.File("exact"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0,1,2", "--top", "5", "--out", dir.File("indexed"), "--index", "--probe", "8");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("probed 8 of 8 lists", r.Err);
        Assert.Contains("exact scan", r.Err);          // the note that IVF recall is poor on TRAK features
        foreach (var q in new[] { "test0", "test1", "test2" })
            Assert.Equal(Proponents(Path.Combine(dir.File("exact"), "explain-trak.json"), q), Proponents(Path.Combine(dir.File("indexed"), "explain-trak.json"), q));
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0", "--index", "--probe", "9", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--probe 9", r.Err);

        // The store changes (a block recomputed): explain --index refuses the stale index.
        var store = Directory.GetDirectories(Path.Combine(run, "store")).Single();
        File.Delete(Path.Combine(store, "blocks", "00000.safetensors"));
        r = Run("build-store", "--run", run, "--methods", "trak", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = Run("explain", "--run", run, "--methods", "trak", "--query", "0", "--index", "--quiet");
        Assert.Equal(1, r.Code); Assert.Contains("stale", r.Err);
        Assert.DoesNotContain(" at ", r.Err);
    }
}
