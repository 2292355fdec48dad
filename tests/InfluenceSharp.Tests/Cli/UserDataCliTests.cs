using InfluenceSharp.Data;
using InfluenceSharp.Storage;
using InfluenceSharp.Tests.Data;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Cli;

/// <summary>`influence train --data imagefolder:|tensors:|csv:` then `detect-mislabeled` on the run:
/// the run records the spec and rebuilds the identical data.</summary>
[Collection("cli")]
public class UserDataCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>Trains one epoch, detects with identity, and checks that the run's recorded spec
    /// rebuilds data with the recorded fingerprint.</summary>
    static RunRecord TrainAndDetect(TempDir dir, params string[] trainArgs)
    {
        string run = dir.File("run");
        var r = Run(new[] { "train", "--out", run, "--epochs", "1", "--batch-size", "8", "--lr", "0.01", "--corrupt", "0.1", "-q" }.Concat(trainArgs).ToArray());
        Assert.True(r.Code == 0, r.Err);
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity", "--top", "3", "-q");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(run, "detect", "detection.json")));
        var record = RunRecord.TryRead(run)!;
        var data = DataSource.Load(record.DataSource!);
        Assert.Equal(record.DataSource, data.Source);
        // The recorded data rebuilds in this process as well (RunData applies the corruption record).
        Assert.Equal(record.DataFingerprint, RunData.For(Checkpoint.List(run)[^1]).Train.Fingerprint());
        return record;
    }

    [Fact]
    public void ImageFolderTrainThenDetectShowsFolderNames()
    {
        using var dir = new TempDir();
        string root = dir.File("flowers");
        UserDataFiles.ImageFolder(root, new[] { "daisy", "rose", "tulip" }, 12, TestSeed.Random(), rgb: true, (10, 12), (8, 8));
        var record = TrainAndDetect(dir, "--data", "imagefolder:" + root, "--image-size", "8", "--model", "smallcnn");
        Assert.Contains("size=8x8&channels=3", record.DataSource);
        var csv = File.ReadAllText(Path.Combine(dir.File("run"), "detect", "suspicious-identity.csv"));
        Assert.Matches("daisy|rose|tulip", csv);
        var r = Run("data", "info", "--data", record.DataSource!);
        Assert.Contains("classes: daisy, rose, tulip", r.Out);
    }

    [Fact]
    public void TensorsTrainThenDetect()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        int n = 60;
        var x = Enumerable.Range(0, n * 5).Select(_ => (float)rng.NextDouble()).ToArray();
        var y = Enumerable.Range(0, n).Select(i => (long)(i % 3)).ToArray();
        string f = dir.File("prepared.safetensors");
        SafeTensors.Save(f, new Dictionary<string, Tensor> { ["features"] = torch.tensor(x, new long[] { n, 5 }), ["target"] = torch.tensor(y) });
        var record = TrainAndDetect(dir, "--data", $"tensors:{f}?x=features&y=target", "--test-fraction", "0.25");
        Assert.Equal("tabular-mlp", record.Model.Architecture);
        Assert.Contains("test-fraction=0.25", record.DataSource);
    }

    [Fact]
    public void CsvTrainThenDetectAndRefuseConvModels()
    {
        using var dir = new TempDir();
        UserDataFiles.Csv(dir.File("people.csv"), 80, TestSeed.Random(), labelName: "buys");
        UserDataFiles.Csv(dir.File("holdout.csv"), 20, new Random(TestSeed.For() + 1), labelName: "buys");
        var record = TrainAndDetect(dir, "--data", "csv:" + dir.File("people.csv"), "--label-column", "buys", "--test-data", dir.File("holdout.csv"),
            "--model", "tabular-mlp", "--widths", "16");
        Assert.Contains("label=buys", record.DataSource);
        Assert.Equal(new[] { 16 }, record.Model.HiddenWidths);
        var r = Run("train", "--out", dir.File("r2"), "--data", "csv:" + dir.File("people.csv"), "--label-column", "buys", "--model", "smallcnn", "--epochs", "1");
        Assert.Equal(2, r.Code);
        Assert.Contains("tabular-mlp", r.Err);
        r = Run("train", "--out", dir.File("r3"), "--data", "csv:" + dir.File("people.csv"), "--epochs", "1");
        Assert.Equal(1, r.Code);
        Assert.Contains("no label column 'label'", r.Err);
        r = Run("train", "--out", dir.File("r4"), "--data", "embedded", "--label-column", "x", "--epochs", "1");
        Assert.NotEqual(0, r.Code);
        Assert.Contains("--label-column", r.Err);
    }
}
