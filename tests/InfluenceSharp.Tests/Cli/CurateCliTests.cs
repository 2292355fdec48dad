using System.Text.Json.Nodes;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A logistic regression trained for one epoch on 200 tinted embedded images.</summary>
public sealed class TintedRunFixture : IDisposable
{
    private readonly TempDir dir = new();
    public string Run => dir.File("run");

    public TintedRunFixture()
    {
        var r = CliRunner.Run("train", "--out", Run, "--data", "tinted", "--model", "logreg", "--epochs", "1", "--train-count", "200",
            "--lr", "0.01", "--seed", "0", "--quiet");
        if (r.Code != 0) throw new InvalidOperationException($"fixture training failed: {r.Err}");
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>`influence curate` resumes and shards to identical results, and refuses bad input before any work.</summary>
[Collection("cli")]
public class CurateCliTests : IClassFixture<TintedRunFixture>
{
    private readonly TintedRunFixture fx;
    public CurateCliTests(TintedRunFixture fx) { this.fx = fx; }

    string[] Args(string outDir, params string[] extra) => With(outDir, new Dictionary<string, string>(), extra);

    /// <summary>The test's command line with some options replaced.</summary>
    string[] With(string outDir, Dictionary<string, string> replace, params string[] extra)
    {
        var o = new Dictionary<string, string>
        {
            ["--validation"] = "test:400", ["--groups"] = "class*tint", ["--objective"] = "d3m", ["--methods"] = "identity",
            ["--remove"] = "10,0.1", ["--seeds"] = "0,1", ["--epochs"] = "1", ["--out"] = outDir,
        };
        foreach (var (k, v) in replace) o[k] = v;
        return new[] { "curate", "--run", fx.Run }.Concat(o.SelectMany(kv => new[] { kv.Key, kv.Value })).Append("--quiet").Concat(extra).ToArray();
    }

    string[] Bad(string outDir, string option, string value) => With(outDir, new Dictionary<string, string> { [option] = value });

    [Fact]
    public void GroupObjectivesRankWithTrakUnlessMethodsAreGiven()
    {
        // ekfac, the default for the mean objective, is known to rank d3m the wrong way.
        using var tmp = new TempDir();
        string a = tmp.File("a");
        var r = CliRunner.Run("curate", "--run", fx.Run, "--validation", "test:400", "--groups", "class*tint", "--objective", "d3m",
            "--remove", "10", "--seeds", "0", "--epochs", "1", "--out", a, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(a, "ranking-trak.csv")));
        Assert.False(File.Exists(Path.Combine(a, "ranking-ekfac.csv")));
        var b = CliRunner.Run(With(tmp.File("b"), new Dictionary<string, string> { ["--methods"] = "ekfac", ["--remove"] = "10", ["--seeds"] = "0" }));
        Assert.True(b.Code == 0, b.Err);
        Assert.Contains("ekfac is known to rank group objectives", b.Err);
    }

    [Fact]
    public void ResumeAfterALostOrCorruptRetrainingAndShardsGiveIdenticalResults()
    {
        using var tmp = new TempDir();
        string a = tmp.File("a");
        var r = CliRunner.Run(Args(a));
        Assert.True(r.Code == 0, r.Err);
        string reference = File.ReadAllText(Path.Combine(a, "curation.json"));
        var json = JsonNode.Parse(reference)!;
        var rows = json["rows"]!.AsArray();
        // none + per k (10, 20): detrimental, helpful, random, self-influence; + balance, balance-upsample.
        Assert.Equal(1 + 2 * 4 + 2, rows.Count);
        Assert.Equal("balance", (string)rows[^2]!["kind"]!);
        Assert.Equal("balance-upsample", (string)rows[^1]!["kind"]!);
        Assert.True((int)rows[^1]!["added"]! > 0);
        foreach (var row in rows)
        {
            // Per-seed values (for paired comparisons) average to the reported means.
            var perSeed = row!["accuracy_per_seed"]!.AsArray().Select(x => (double)x!).ToArray();
            var worst = row["worst_group_accuracy_per_seed"]!.AsArray().Select(x => (double)x!).ToArray();
            Assert.Equal(2, perSeed.Length);
            Assert.Equal((double)row["accuracy"]!, perSeed.Average(), 12);
            Assert.Equal((double)row["worst_group_accuracy"]!, worst.Average(), 12);
        }
        var md = File.ReadAllText(Path.Combine(a, "curation.md"));
        Assert.Contains("| detrimental-identity-k20 | 20 |", md);
        Assert.Contains("| setting | T-shirt/top/red | T-shirt/top/green | Trouser/red |", md);   // per-group table
        Assert.True(new FileInfo(Path.Combine(a, "curation.png")).Length > 1000);
        var ranking = File.ReadAllLines(Path.Combine(a, "ranking-identity.csv"));
        Assert.Equal("rank,index,score,label,group,source", ranking[0]);
        Assert.Equal(201, ranking.Length);

        // The run's report has a data-curation section when RUN_DIR/curate holds results.
        string runCurate = Path.Combine(fx.Run, "curate");
        Directory.CreateDirectory(runCurate);
        foreach (var f in new[] { "curation.json", "curation.png" }) File.Copy(Path.Combine(a, f), Path.Combine(runCurate, f), true);
        try
        {
            Assert.Equal(0, CliRunner.Run("report", "--run", fx.Run, "--out", tmp.Path).Code);
            var html = File.ReadAllText(tmp.File("report.html"));
            Assert.Contains("Data curation", html);
            Assert.Contains("detrimental-identity-k20", html);
        }
        finally { Directory.Delete(runCurate, true); }

        // "Kill": one retraining lost, one half-written (corrupt), one made for another removed set.
        string retrain = Path.Combine(a, "retrain");
        File.Delete(Path.Combine(retrain, "random-k10-seed1-steps.json"));
        File.WriteAllText(Path.Combine(retrain, "detrimental-identity-k20-seed0-steps.json"), "{\"setting\": \"detri");
        string helpful = Path.Combine(retrain, "helpful-identity-k10-seed0-steps.json");
        var h = JsonNode.Parse(File.ReadAllText(helpful))!;
        h["removed_hash"] = "0000";
        File.WriteAllText(helpful, h.ToJsonString());
        string untouched = Path.Combine(retrain, "none-seed0-steps.json");
        var stamp = File.GetLastWriteTimeUtc(untouched);
        File.Delete(Path.Combine(a, "curation.json"));
        r = CliRunner.Run(Args(a));
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(reference, File.ReadAllText(Path.Combine(a, "curation.json")));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(untouched));   // finished retrainings are reused

        // Two shards, then the report run: the same results.
        string b = tmp.File("b");
        r = CliRunner.Run(Args(b, "--shard", "0/2"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("still to do by other shards", r.Out);
        Assert.False(File.Exists(Path.Combine(b, "curation.json")));
        Assert.Equal(0, CliRunner.Run(Args(b, "--shard", "1/2")).Code);
        r = CliRunner.Run(Args(b));
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(reference, File.ReadAllText(Path.Combine(b, "curation.json")));
    }

    [Fact]
    public void BadInputIsAClearUsageErrorBeforeAnyWork()
    {
        using var tmp = new TempDir();
        string outDir = tmp.File("out");
        var wrongLength = tmp.File("short.txt");
        File.WriteAllText(wrongLength, "0\n1\n2\n");
        // One id per test example (2000); group 3 appears only after the 400 validation examples.
        var late = tmp.File("late.txt");
        File.WriteAllLines(late, Enumerable.Range(0, 2000).Select(i => i < 400 ? (i % 3).ToString() : "3"));
        var cases = new (string[] Args, string Message)[]
        {
            (Bad(outDir, "--groups", wrongLength), "3 group ids"),
            (Bad(outDir, "--groups", "colour"), "'colour' is not a group column"),
            (Bad(outDir, "--groups", late), "group 3 has no example in the validation set"),
            (new[] { "curate", "--run", fx.Run, "--validation", "test:400", "--objective", "worst-group", "--out", outDir }, "needs validation group labels"),
            (Bad(outDir, "--validation", "test:2000"), "must leave a test set"),
            (Bad(outDir, "--validation", "train:10"), "expected test:N"),
            (Bad(outDir, "--remove", "200"), "between 1 and 199"),
            (Bad(outDir, "--remove", "ten"), "'ten' is not a count"),
            (Bad(outDir, "--objective", "worst"), "choose mean, worst-group, d3m"),
            (Bad(outDir, "--objective", "group:20"), "group 20 is outside [0, 20)"),
            (Bad(outDir, "--seeds", "0,0"), "a seed repeats"),
            (Bad(outDir, "--retrain-budget", "days"), "choose steps, epochs"),
        };
        foreach (var (args, message) in cases)
        {
            var r = CliRunner.Run(args);
            Assert.True(r.Code == 2, $"{string.Join(' ', args)}: exit {r.Code}\n{r.Err}");
            Assert.Contains(message, r.Err);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.False(Directory.Exists(outDir), $"{string.Join(' ', args)}: wrote {outDir}");
        }
    }
}
