using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`train --model gpt` on text:FILE: a run whose data and model reopen; refusals name the mismatch.</summary>
public class GptTrainCliTests
{
    [Fact]
    public void TrainsAGptOnTextAndTheRunReopens()
    {
        using var dir = new TempDir();
        string corpus = dir.File("corpus.txt");
        File.WriteAllText(corpus, string.Join("\n\n", TextFacts.Generate(6, 10, 1).Documents.Select(d => d.Text)));
        string spec = $"text:{corpus}?tokenizer=byte&seq=24";
        var r = CliRunner.Run("train", "--data", spec, "--model", "gpt", "--widths", "16,1,2", "--epochs", "2", "--lr", "0.2",
            "--batch-size", "8", "--weight-decay", "0", "--out", dir.File("run"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var run = Run.Open(dir.File("run"));
        var train = Assert.IsType<TextDataset>(run.Data.Train);
        Assert.Equal(24, train.SequenceLength);
        var model = Assert.IsType<Gpt>(run.Last.LoadModel());
        Assert.Equal(new GptOptions(257, 24, 16, 1, 2), model.Options);
        Assert.True(run.Last.Info.Metrics!.TrainLoss < 5.5, "next-token loss per token below uniform (ln 257 = 5.55)");

        r = CliRunner.Run("train", "--data", spec, "--model", "mlp", "--epochs", "1", "--out", dir.File("bad"), "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("token sequences", r.Err);
        r = CliRunner.Run("train", "--data", "embedded", "--model", "gpt", "--epochs", "1", "--out", dir.File("bad2"), "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("text data", r.Err);
    }
}
