using System.Text.Json;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`evaluate lds` on a GPT trained on a tiny text file: test-sequence queries and
/// prompt/completion queries (--prompts), the loss target (summed log-probability) by default, and the
/// misuses refused naming the option or file.</summary>
public class LdsTextCliTests
{
    static string Corpus(TempDir dir)
    {
        string path = dir.File("corpus.txt");
        File.WriteAllLines(path, new[]
        {
            "the cat sat on the mat.", "a dog ran in the park.", "the sun is hot today.", "we ate bread and jam.",
            "rain fell on the roof.", "the owl sees at night.", "my kite flew so high.", "the sea is deep and blue.",
            "birds sing in the tree.", "snow is cold and white.", "he reads a long book.", "the fox hid in a den.",
            "she drew a red boat.", "a bee made some honey.", "the bus came at noon.", "ice melts in the sun.",
        });
        return path;
    }

    static List<JsonElement> Rows(string cache)
    {
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(cache, "lds-results.json")));
        return json.RootElement.EnumerateArray().Select(e => e.Clone()).ToList();
    }

    [Fact]
    public void TextRunLdsWithTestSequencesAndPromptQueries()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", $"text:{Corpus(dir)}?docs=lines&tokenizer=byte&seq=24&pack=docs&test-fraction=0.25", "--model", "gpt",
            "--widths", "8,1,2", "--epochs", "2", "--lr", "0.05", "--batch-size", "4", "--weight-decay", "0", "--seed", "4", "--out", run, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);

        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "identity,ekfac", "--subsets", "3", "--query-count", "3", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("summed log-probability", r.Out);
        var rows = Rows(Path.Combine(run, "lds"));
        Assert.Equal(new[] { "identity", "ekfac" }, rows.Select(x => x.GetProperty("method").GetString()));
        Assert.All(rows, x => { Assert.Equal("loss", x.GetProperty("target").GetString()); Assert.Equal(3, x.GetProperty("queries").GetInt32()); Assert.Equal(3, x.GetProperty("subsets").GetInt32()); });
        Assert.Equal(3, Directory.GetFiles(Path.Combine(run, "lds"), "subset-*.safetensors").Length);

        string prompts = dir.File("prompts.tsv");
        File.WriteAllText(prompts, "the cat sat on\t the mat.\n\nsnow is\t cold and white.\n");
        string cache = dir.File("lds-prompts");
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "identity", "--subsets", "3", "--prompts", prompts, "--out", cache, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(2, Rows(cache).Single().GetProperty("queries").GetInt32());
        // The prompt queries are not the test sequences: the first cache refuses them.
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--methods", "identity", "--subsets", "3", "--prompts", prompts, "--quiet", "--threads", "1");
        Assert.NotEqual(0, r.Code); Assert.Contains("query_fingerprint", r.Err);

        // Misuse: exit 2 (usage) or 1, naming the option or the file and line; never a raw exception.
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--target", "margin", "--subsets", "3", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--target margin", r.Err);
        File.WriteAllText(prompts, "the cat sat on\t the mat.\nno tab here\n");
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--subsets", "3", "--prompts", prompts, "--out", dir.File("bad"), "--quiet");
        Assert.NotEqual(0, r.Code); Assert.Contains("prompts.tsv line 2", r.Err); Assert.DoesNotContain("   at ", r.Err);
        File.WriteAllText(prompts, "the cat\t " + new string('x', 40) + "\n");
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--subsets", "3", "--prompts", prompts, "--out", dir.File("bad2"), "--quiet");
        Assert.NotEqual(0, r.Code); Assert.Contains("--prompts", r.Err); Assert.Contains("context", r.Err);
    }

    [Fact]
    public void PromptsOnAClassifierRunAreRefused()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--out", run, "--model", "logreg", "--epochs", "1", "--train-count", "60", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        File.WriteAllText(dir.File("p.tsv"), "a\tb\n");
        r = CliRunner.Run("evaluate", "lds", "--run", run, "--prompts", dir.File("p.tsv"), "--subsets", "3", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--prompts", r.Err); Assert.Contains("text", r.Err);
    }
}
