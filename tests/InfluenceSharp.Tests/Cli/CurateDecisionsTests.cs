using System.Globalization;
using System.Text.Json.Nodes;
using InfluenceSharp.Cli.Serve;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A logistic regression trained to convergence (L-BFGS, weight decay 0.01) on 300 tinted
/// embedded images: every retraining is stable, so a relabelled class shows in what it predicts.</summary>
public sealed class DecisionsRunFixture : IDisposable
{
    private readonly TempDir dir = new();
    public string Run => dir.File("run");

    public DecisionsRunFixture()
    {
        var r = CliRunner.Run("train", "--out", Run, "--data", "tinted", "--model", "logreg", "--train-count", "300",
            "--lbfgs-tol", "1e-4", "--weight-decay", "0.01", "--seed", "0", "--threads", "1", "--quiet");
        if (r.Code != 0) throw new InvalidOperationException($"fixture training failed: {r.Err}");
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>`influence curate --decisions`: the explorer's decisions file, written by its own writer,
/// becomes one more retrained setting (removals and relabels), and its "keep" examples are never
/// removed by the methods' sets.</summary>
[Collection("cli")]
public class CurateDecisionsTests : IClassFixture<DecisionsRunFixture>
{
    readonly DecisionsRunFixture fx;
    public CurateDecisionsTests(DecisionsRunFixture fx) { this.fx = fx; }

    string[] Curate(string outDir, params string[] extra) =>
        new[] { "curate", "--run", fx.Run, "--validation", "test:400", "--groups", "class", "--objective", "mean", "--methods", "identity",
            "--remove", "10", "--seeds", "0", "--out", outDir, "--quiet" }.Concat(extra).ToArray();

    [Fact]
    public void DecisionsAreRetrainedBesideTheMethodsAndKeptExamplesAreNeverRemoved()
    {
        using var tmp = new TempDir();
        var train = RunData.For(Checkpoint.List(fx.Run)[^1]).Train;
        // Without decisions first: the ranking (to keep some of the most detrimental examples) and each class's accuracy.
        var r = CliRunner.Run(Curate(tmp.File("plain")));
        Assert.True(r.Code == 0, r.Err);
        var ranking = File.ReadAllLines(Path.Combine(tmp.File("plain"), "ranking-identity.csv")).Skip(1)
            .Select(l => int.Parse(l.Split(',')[1], CultureInfo.InvariantCulture)).ToArray();
        var keep = ranking.Take(3).ToArray();
        var plain = JsonNode.Parse(File.ReadAllText(Path.Combine(tmp.File("plain"), "curation.json")))!;
        var names = plain["group_names"]!.AsArray().Select(n => (string)n!).ToList();
        var noneRow = plain["rows"]!.AsArray().Single(x => (string)x!["kind"]! == "none")!;
        double Accuracy(JsonNode row, int c) => (double)row["group_accuracy"]![names.IndexOf(train.ClassName(c))]!;
        // Every training example of the best-learnt class (none of them kept) is relabelled to another.
        int a = Enumerable.Range(0, train.NumClasses).Where(c => keep.All(i => train.Labels[i] != c)).MaxBy(c => Accuracy(noneRow, c));
        int b = (a + 1) % train.NumClasses;
        double none = Accuracy(noneRow, a);
        Assert.True(none >= 0.4, $"class {train.ClassName(a)}: {none}");
        var relabel = Enumerable.Range(0, train.Count).Where(i => train.Labels[i] == a).ToArray();
        var remove = Enumerable.Range(0, train.Count).Where(i => train.Labels[i] != a && !keep.Contains(i)).Take(5).ToArray();
        string file = Path.Combine(fx.Run, DecisionsFile.FileName);
        try
        {
            var writer = new DecisionsFile(fx.Run, train);
            foreach (int i in keep) writer.Set(i, "keep", null);
            foreach (int i in relabel) writer.Set(i, "relabel", train.ClassName(b));
            foreach (int i in remove) writer.Set(i, "remove", null);

            string outDir = tmp.File("out");
            r = CliRunner.Run(Curate(outDir, "--decisions", file));
            Assert.True(r.Code == 0, r.Err);
            Assert.Contains($"{remove.Length} removed, {relabel.Length} relabelled, {keep.Length} kept", r.Out);
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(outDir, "curation.json")))!;
            var rows = json["rows"]!.AsArray();
            var decided = rows.Single(x => (string)x!["kind"]! == "decisions")!;
            Assert.Equal(remove.Length, (int)decided["k"]!);
            Assert.Equal(relabel.Length, (int)decided["relabeled"]!);
            Assert.Contains("| decisions | 5 |", File.ReadAllText(Path.Combine(outDir, "curation.md")));

            // The retrained set is the file's: its removals and relabels (the cache records their hash).
            string retrain = Path.Combine(outDir, "retrain");
            var expected = new CurationSetting("decisions", "decisions", null, remove.Length, remove) { Relabeled = relabel.Select(i => (i, b)).ToArray() };
            var outcome = JsonNode.Parse(File.ReadAllText(Path.Combine(retrain, "decisions-seed0-steps.json")))!;
            Assert.Equal(expected.RemovedHash(), (string)outcome["removed_hash"]!);
            Assert.Equal(train.Count - remove.Length, (int)outcome["train_count"]!);
            // Trained without a single example of class a, the model gets that class's test examples wrong.
            double relabelled = Accuracy(decided, a);
            Assert.True(relabelled < none / 2, $"class {train.ClassName(a)}: accuracy {relabelled} with its examples relabelled, {none} without");

            // The methods' detrimental set skips the kept examples: the next ones in the ranking instead.
            var detrimental = new CurationSetting("x", "detrimental", "identity", 10, ranking.Where(i => !keep.Contains(i)).Take(10).ToArray());
            var d = JsonNode.Parse(File.ReadAllText(Path.Combine(retrain, "detrimental-identity-k10-seed0-steps.json")))!;
            Assert.Equal(detrimental.RemovedHash(), (string)d["removed_hash"]!);
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public void AMalformedDecisionsFileIsAnErrorNamingItsLine()
    {
        using var tmp = new TempDir();
        var train = RunData.For(Checkpoint.List(fx.Run)[^1]).Train;
        string src = InfluenceSharp.Data.SourceText.Csv(InfluenceSharp.Data.SourceText.Of(train, 1));
        var cases = new (string Text, string Message)[]
        {
            ($"index,source,decision,label\n1,{src},remove,\nx,{src},remove,\n", "line 3: index 'x'"),
            ($"index,source,decision,label\n1,{src},delete,\n", "line 2: decision 'delete'"),
            ($"index,source,decision,label\n1,{src},remove,\n1,{src},keep,\n", "line 3: example 1 was already decided on line 2"),
            ($"index,source,decision,label\n1,{src},relabel,zebra\n", "line 2: label 'zebra'"),
            ("index,source,decision,label\n1,somewhere-else.png,remove,\n", "line 2: example 1 is"),
            ("rank,index,score\n1,2,0.5\n", "line 1: not a decisions file"),
        };
        foreach (var (text, message) in cases)
        {
            string file = tmp.File("decisions.csv");
            File.WriteAllText(file, text);
            var r = CliRunner.Run(Curate(tmp.File("out"), "--decisions", file));
            Assert.True(r.Code != 0, text);
            Assert.Contains($"{file}: {message}", r.Err);
            Assert.DoesNotContain("   at ", r.Err);
            Assert.False(Directory.Exists(Path.Combine(tmp.File("out"), "retrain")), "no retraining before the file is read");
        }
        var missing = CliRunner.Run(Curate(tmp.File("out"), "--decisions", tmp.File("none.csv")));
        Assert.Equal(2, missing.Code);
        Assert.Contains("no such file", missing.Err);
    }
}
