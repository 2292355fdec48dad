using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`explain --prompt --completion` on a GPT trained on the planted-fact corpus: the query is the
/// completion's log-probability, the proponents name their documents and spans, EK-FAC lists per-token
/// scores that add up to each sequence's score; misuse is refused naming the option.</summary>
public class ExplainPromptCliTests
{
    [Fact]
    public void TracesPlantedFactsToTheirSourceDocuments()
    {
        using var dir = new TempDir();
        string run = dir.File("run"), spec = "text:planted-facts?tokenizer=byte&seq=112&pack=docs";
        var r = CliRunner.Run("train", "--data", spec, "--model", "gpt", "--widths", "16,1,2", "--epochs", "3", "--lr", "0.15",
            "--batch-size", "8", "--weight-decay", "0", "--seed", "11", "--out", run, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        var train = Assert.IsType<TextDataset>(Run.Open(run).Data.Train);
        var corpus = TextFacts.Default;
        // The facts whose source document is in the training split (the rest went to the test set).
        var facts = corpus.Facts.Select(f => (Fact: f, Doc: train.Documents.ToList().FindIndex(d => d.Text == corpus.Documents[f.Document].Text)))
            .Where(x => x.Doc >= 0).Take(3).ToList();
        Assert.NotEmpty(facts);
        int found = 0;
        foreach (var (fact, doc) in facts)
        {
            string outDir = dir.File("explain-" + doc);
            r = CliRunner.Run("explain", "--run", run, "--prompt", fact.Prompt, "--completion", fact.Completion, "--methods", "ekfac",
                "--top", "10", "--out", outDir, "--quiet", "--threads", "1");
            Assert.True(r.Code == 0, r.Err);
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, "explain-ekfac.json")));
            var q = json.RootElement[0];
            Assert.Equal(fact.Prompt + fact.Completion, q.GetProperty("text").GetString());
            var pros = q.GetProperty("proponents").EnumerateArray().ToList();
            Assert.NotEmpty(pros);
            foreach (var p in pros)
            {
                int i = p.GetProperty("index").GetInt32();
                var src = p.GetProperty("source");
                Assert.Equal(train.Text(i), src.GetProperty("text").GetString());
                foreach (var d in src.GetProperty("documents").EnumerateArray())
                {
                    int di = d.GetProperty("document").GetInt32(), s = d.GetProperty("start").GetInt32(), e = d.GetProperty("end").GetInt32();
                    Assert.True(s >= 0 && e > s && e <= train.Documents[di].Text.Length);
                }
                // Per-token scores add up to the sequence's score.
                var tokens = p.GetProperty("tokens").EnumerateArray().Select(t => t.GetProperty("score").GetDouble()).ToList();
                double score = p.GetProperty("score").GetDouble();
                Assert.True(Math.Abs(tokens.Sum() - score) <= 1e-3 * Math.Abs(score) + 1e-6, $"tokens sum {tokens.Sum()} vs score {score}");
            }
            if (pros.Any(p => p.GetProperty("source").GetProperty("documents").EnumerateArray().Any(d => d.GetProperty("document").GetInt32() == doc)))
                found++;
        }
        Assert.True(found >= 1, $"no fact's source document among its top-10 EK-FAC proponents ({facts.Count} facts)");

        // Refusals: exit 2, naming the option.
        r = CliRunner.Run("explain", "--run", run, "--prompt", "The capital of", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--completion", r.Err);
        r = CliRunner.Run("explain", "--run", run, "--completion", " X.", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--completion", r.Err);
        r = CliRunner.Run("explain", "--run", run, "--prompt", "a", "--completion", "b", "--query", "0", "--quiet");
        Assert.Equal(2, r.Code); Assert.Contains("--prompt", r.Err);
        // The gradient-similarity methods and TRAK take the language-model task too.
        var (f0, _) = facts[0];
        string more = dir.File("explain-more");
        r = CliRunner.Run("explain", "--run", run, "--prompt", f0.Prompt, "--completion", f0.Completion, "--methods", "tracin-last,tracin,tracin-proj,graddot,gradcos,trak",
            "--top", "5", "--out", more, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        var written = Directory.GetFiles(more, "explain-*.json").Select(Path.GetFileName).ToList();
        Assert.True(written.Count >= 6, string.Join(", ", written));
        foreach (var file in Directory.GetFiles(more, "explain-*.json"))
        {
            using var json = JsonDocument.Parse(File.ReadAllText(file));
            Assert.NotEmpty(json.RootElement[0].GetProperty("proponents").EnumerateArray());
        }
        // A method without a language-model form says so (no internal error).
        r = CliRunner.Run("explain", "--run", run, "--prompt", "a", "--completion", "b", "--methods", "unrolled", "--quiet");
        Assert.NotEqual(0, r.Code); Assert.Contains("--methods unrolled", r.Err); Assert.DoesNotContain("internal error", r.Err);
    }

    [Fact]
    public void PromptOnANonTextRunIsRefused()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--out", run, "--model", "logreg", "--epochs", "1", "--train-count", "60", "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("explain", "--run", run, "--prompt", "The capital of", "--completion", " X.", "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("--prompt", r.Err);
        Assert.Contains("not text", r.Err);
    }
}
