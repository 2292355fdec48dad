using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Models;
using InfluenceSharp.Runs;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A user's own language model, as `--model Assembly.dll:Type` names it: token ids [B, T] in,
/// next-token logits [B, T, V] out; the constructor takes the vocabulary (a text run's class count).
/// Marked <see cref="ISequenceModel"/> so its Linear layers are captured at every token.</summary>
public sealed class TinyUserLm : Module<Tensor, Tensor>, ISequenceModel
{
    private readonly TorchSharp.Modules.Embedding wte;
    private readonly TorchSharp.Modules.Linear hidden, head;

    public TinyUserLm(int vocabulary) : base(nameof(TinyUserLm))
    {
        wte = Embedding(vocabulary, 16);
        hidden = Linear(16, 16);
        head = Linear(16, vocabulary);
        RegisterComponents();
    }

    public override Tensor forward(Tensor tokens) => head.call(functional.relu(hidden.call(wte.call(tokens))));
}

[Collection("cli")]
public class UserSequenceModelTests
{
    [Fact]
    public void AUsersLanguageModelTrainsOnTextAndIsExplainedByPrompt()
    {
        using var dir = new TempDir();
        string run = dir.File("run"), model = $"{typeof(TinyUserLm).Assembly.Location}:{typeof(TinyUserLm).FullName}";
        var r = CliRunner.Run("train", "--data", "text:planted-facts?tokenizer=byte&seq=112&pack=docs", "--model", model, "--epochs", "2",
            "--lr", "0.1", "--batch-size", "8", "--weight-decay", "0", "--seed", "5", "--out", run, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        var opened = Run.Open(run);
        Assert.IsType<TextDataset>(opened.Data.Train);
        var layers = TrackedLayer.Find(opened.Last.LoadModel());
        Assert.Equal(new[] { "wte", "hidden", "head" }, layers.Select(l => l.Name));
        Assert.All(layers, l => Assert.True(l.SeveralPositions, l.Name));

        var fact = TextFacts.Default.Facts[0];
        string outDir = dir.File("explain");
        r = CliRunner.Run("explain", "--run", run, "--prompt", fact.Prompt, "--completion", fact.Completion, "--methods", "ekfac,tracin-last",
            "--top", "3", "--out", outDir, "--quiet", "--threads", "1");
        Assert.True(r.Code == 0, r.Err);
        foreach (var m in new[] { "ekfac", "tracin-last" })
        {
            using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(outDir, $"explain-{m}.json")));
            var text = json.RootElement.GetRawText();
            Assert.Contains("\"text\"", text);
            Assert.DoesNotContain("NaN", text);
        }
    }
}
