using System.Text.Json.Nodes;

namespace InfluenceSharp.Tests.Cli;

/// <summary>On a run with flipped labels, curate adds the oracle setting that removes exactly them.</summary>
[Collection("cli")]
public class CurateFlippedLabelsTests
{
    [Fact]
    public void ARunWithFlippedLabelsGetsTheOracleRemovalOfExactlyThose()
    {
        using var tmp = new TempDir();
        string run = tmp.File("run");
        var r = CliRunner.Run("train", "--out", run, "--model", "logreg", "--epochs", "1", "--train-count", "200", "--lr", "0.01",
            "--corrupt", "0.1", "--seed", "0", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("curate", "--run", run, "--validation", "test:200", "--methods", "identity", "--remove", "10", "--seeds", "0",
            "--out", tmp.File("c"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var corrupted = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "corruption.json")))!["indices"]!.AsArray().Select(x => (int)x!).ToArray();
        Assert.Equal(20, corrupted.Length);
        var rows = JsonNode.Parse(File.ReadAllText(tmp.File("c/curation.json")))!["rows"]!.AsArray();
        var oracle = rows.Single(x => (string)x!["setting"]! == "flipped-labels")!;
        Assert.Equal(20, (int)oracle["k"]!);
        var o = JsonNode.Parse(File.ReadAllText(tmp.File("c/retrain/flipped-labels-seed0-steps.json")))!;
        Assert.Equal(180, (int)o["train_count"]!);
        var hash = new InfluenceSharp.Evaluation.CurationSetting("flipped-labels", "flipped-labels", null, 20, corrupted).RemovedHash();
        Assert.Equal(hash, (string)o["removed_hash"]!);
    }
}
