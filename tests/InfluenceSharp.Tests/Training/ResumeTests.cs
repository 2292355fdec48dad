using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Models;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Training;

/// <summary>run.json is the record of a run: an incomplete run is refused, and `--resume` finishes it
/// to the same weights as an uninterrupted run.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class ResumeTests
{
    /// <summary>Stops training (as a kill would) when epoch <c>stopAt</c> starts.</summary>
    sealed class StopAt(int stopAt, int epochs) : IProgress<ProgressUpdate>
    {
        public void Report(ProgressUpdate value)
        {
            if (value.Label == $"epoch {stopAt}/{epochs}") throw new OperationCanceledException("stopped");
        }
    }

    [Fact]
    public void RunWithAMissingSidecarOrStoppedEarlyIsRefusedNamingWhatIsMissing()
    {
        using var dir = new TempDir();
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 200).ToArray());
        var spec = ModelSpec.For("logreg", 1, 28, 28, 10);
        new Trainer(new TrainOptions { Epochs = 2, BatchSize = 50 }).Train(spec, train, null, dir.Path);
        Assert.Equal(2, Checkpoint.List(dir.Path).Count);
        File.Delete(Path.Combine(dir.Path, "epoch-0002.json"));
        var e = Assert.Throws<InfluenceSharpException>(() => Checkpoint.List(dir.Path));
        Assert.Contains("epoch-0002", e.Message);
        Assert.Contains("incomplete", e.Message);
        Assert.Throws<InfluenceSharpException>(() => TracInCheckpoint.FromRun(dir.Path));
        Assert.Single(Checkpoint.List(dir.Path, allowIncomplete: true));

        // Stopped after epoch 1 of 3.
        using var stopped = new TempDir();
        Assert.Throws<OperationCanceledException>(() =>
            new Trainer(new TrainOptions { Epochs = 3, BatchSize = 50 }, new StopAt(2, 3)).Train(spec, train, null, stopped.Path));
        e = Assert.Throws<InfluenceSharpException>(() => Checkpoint.List(stopped.Path));
        Assert.Contains("1 of 3 epochs", e.Message);
        var r = CliRunner.Run("fit-factors", "--run", stopped.Path, "--out", stopped.File("factors"), "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("incomplete run", r.Err);
    }

    [Fact]
    public void TrainResumeAfterAnInterruptionGivesTheSameWeightsAsAnUninterruptedRun()
    {
        using var dir = new TempDir();
        string straight = dir.File("straight"), resumed = dir.File("resumed");
        string[] args = { "--data", "embedded", "--model", "logreg", "--epochs", "3", "--batch-size", "512", "--seed", "3", "--quiet" };
        var r = CliRunner.Run(new[] { "train", "--out", straight }.Concat(args).ToArray());
        Assert.True(r.Code == 0, r.Err);

        // The same run, stopped when epoch 2 starts (the library trainer with the options the CLI builds).
        var split = Embedded.Split;
        var spec = ModelSpec.For("logreg", split.Train.Channels, split.Train.Height, split.Train.Width, split.Train.NumClasses);
        var options = new TrainOptions { Epochs = 3, BatchSize = 512, Seed = 3 };
        Assert.Throws<OperationCanceledException>(() =>
            new Trainer(options, new StopAt(2, 3)).Train(spec, split.Train, split.Test, resumed, null, split.Source));
        Assert.True(File.Exists(Path.Combine(resumed, "epoch-0001.safetensors")));
        Assert.False(File.Exists(Path.Combine(resumed, "epoch-0002.safetensors")));

        r = CliRunner.Run(new[] { "train", "--out", resumed }.Concat(args).ToArray());
        Assert.Equal(1, r.Code);                      // neither --resume nor --overwrite: refused
        r = CliRunner.Run(new[] { "train", "--out", resumed, "--resume" }.Concat(args).ToArray());
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "epoch-0003.safetensors")), File.ReadAllBytes(Path.Combine(resumed, "epoch-0003.safetensors")));
        Assert.Equal(3, Checkpoint.List(resumed).Count);
        Assert.Empty(Directory.GetFiles(resumed, "optimizer-*"));
    }

    [Fact]
    public void ResumeWithAugmentationAndMomentumIsBitIdentical()
    {
        using var dir = new TempDir();
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 300).ToArray());
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 16 });
        var o = new TrainOptions { Epochs = 3, BatchSize = 64, Seed = 9, Augment = true, Schedule = LrSchedule.OneCycle };
        new Trainer(o).Train(spec, train, null, dir.File("a"));
        Assert.Throws<OperationCanceledException>(() => new Trainer(o, new StopAt(3, 3)).Train(spec, train, null, dir.File("b")));
        Assert.Throws<InfluenceSharpException>(() => new Trainer(o with { LearningRate = 0.01 }).Train(spec, train, null, dir.File("b"), existing: ExistingRun.Resume));
        var result = new Trainer(o).Train(spec, train, null, dir.File("b"), existing: ExistingRun.Resume);
        Assert.Equal(3, result.History.Count);
        Assert.Equal(File.ReadAllBytes(Path.Combine(dir.File("a"), "epoch-0003.safetensors")), File.ReadAllBytes(Path.Combine(dir.File("b"), "epoch-0003.safetensors")));
    }
}
