using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A run of 300 embedded examples (Mlp, width 16, 1 epoch, 10% flipped labels) for the
/// error-message tests.</summary>
public sealed class TinyRunFixture() : TrainedRunFixture("--model", "mlp", "--widths", "16", "--epochs", "1", "--train-count", "300",
    "--corrupt", "0.1", "--threads", "1");

/// <summary>User mistakes are reported as what the user did wrong (the option, the file and what is
/// wrong with it), never as .NET's or a library's exception text; a failed command leaves no empty
/// output folders or half-made runs behind.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class UserErrorMessageTests : IClassFixture<TinyRunFixture>
{
    private readonly TinyRunFixture fx;
    public UserErrorMessageTests(TinyRunFixture fx) { this.fx = fx; }

    static readonly string[] Small = { "--model", "mlp", "--widths", "16", "--epochs", "1", "--train-count", "100", "--threads", "1", "--quiet" };

    static (int Code, string Out, string Err) Train(string outDir, params string[] more) =>
        CliRunner.Run(new[] { "train", "--out", outDir }.Concat(Small).Concat(more).ToArray());

    /// <summary>No .NET sentence, type name or stack trace in an error.</summary>
    static void AssertClean(string err)
    {
        foreach (var raw in new[] { "already exists.", "Could not find", "Access to the path", "NotImplementedException", "System.", "List`1",
                     "JSON deserialization", "could not be converted", "   at ", "internal error" })
            Assert.DoesNotContain(raw, err, StringComparison.Ordinal);
        Assert.False(err.Contains('\0'), "a NUL character in: " + err);
    }

    [Theory]
    [InlineData("train --out {file} --model mlp --epochs 1 --train-count 100")]
    [InlineData("fit-factors --run {run} --out {file}")]
    [InlineData("report --run {run} --out {file}")]
    [InlineData("scores self --run {run} --methods tracin-last --out {file}")]
    public void AnOutThatIsAFileIsAUsageErrorSayingSo(string line)
    {
        using var dir = new TempDir();
        string file = dir.File("afile");
        File.WriteAllText(file, "not a directory");
        var r = CliRunner.Run(line.Replace("{file}", file).Replace("{run}", fx.Run).Split(' '));
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Err}");
        Assert.Contains($"--out {file}: is a file", r.Err);
        AssertClean(r.Err);
        Assert.Equal("not a directory", File.ReadAllText(file));
    }

    [Fact]
    public void AnOutUnderAFileNamesTheFile()
    {
        using var dir = new TempDir();
        string file = dir.File("afile");
        File.WriteAllText(file, "x");
        var r = CliRunner.Run("scores", "self", "--run", fx.Run, "--methods", "tracin-last", "--out", Path.Combine(file, "sub"), "--quiet");
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Err}");
        Assert.Contains($"{file} is a file, not a directory", r.Err);
        AssertClean(r.Err);
    }

    [Fact]
    public void AnOutThatCannotBeCreatedSaysWhere()
    {
        if (!OperatingSystem.IsLinux()) return;   // /proc refuses new directories (even to root)
        var r = Train("/proc/influencesharp-test-out");
        Assert.True(r.Code == 1, $"exit {r.Code}: {r.Err}");
        Assert.Contains("--out /proc/influencesharp-test-out: cannot create the directory in /proc", r.Err);
        AssertClean(r.Err);
    }

    [Fact]
    public void MissingParentsOfAnOutAreCreated()
    {
        using var dir = new TempDir();
        string deep = Path.Combine(dir.Path, "a", "b", "scores");
        var r = CliRunner.Run("scores", "self", "--run", fx.Run, "--methods", "tracin-last", "--out", deep, "--threads", "1", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(deep, "self_influence.npy")));
    }

    [Fact]
    public void InitFilesThatAreNotWeightsAreNamedAsSuch()
    {
        using var dir = new TempDir();
        string text = dir.File("bad.pt");
        File.WriteAllText(text, "this is text, not weights\n");
        var r = Train(dir.File("r1"), "--init", text);
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("bad.pt: not a PyTorch state dict (a text file", r.Err);
        AssertClean(r.Err);
        Assert.False(Directory.Exists(dir.File("r1")), "a failed train left its output directory");

        string legacy = dir.File("legacy.pth");
        File.WriteAllBytes(legacy, new byte[] { 0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46 });
        r = Train(dir.File("r2"), "--init", legacy);
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("legacy (pre-1.6) format", r.Err);
        AssertClean(r.Err);

        r = Train(dir.File("r3"), "--init", dir.File("nope.safetensors"));
        Assert.True(r.Code == 2, r.Err);
        Assert.Contains("--init " + dir.File("nope.safetensors") + ": no such file", r.Err);
        AssertClean(r.Err);

        r = Train(dir.File("r4"), "--init", dir.Path);
        Assert.True(r.Code == 2, r.Err);
        Assert.Contains($"--init {dir.Path}: is a directory", r.Err);
        AssertClean(r.Err);
        foreach (var d in new[] { "r2", "r3", "r4" }) Assert.False(Directory.Exists(dir.File(d)), $"{d} was left behind");
    }

    static void SaveState(nn.Module model, string path, Action<Dictionary<string, Tensor>>? edit = null)
    {
        var state = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone());
        edit?.Invoke(state);
        SafeTensors.Save(path, state);
    }

    [Fact]
    public void NonFiniteInitWeightsAreRefusedByTensorAndLeaveNoRun()
    {
        using var dir = new TempDir();
        string nan = dir.File("nan.safetensors");
        torch.manual_seed(TestSeed.For());
        using (var model = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 16 }).Create())
            SaveState(model, nan, s => { using (no_grad()) s["fc2.weight"][3, 5].fill_(float.NaN); });
        string outDir = dir.File("run");
        var r = Train(outDir, "--init", nan);
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("tensor 'fc2.weight' holds NaN or infinite values", r.Err);
        Assert.DoesNotContain("diverged: loss", r.Err);
        Assert.DoesNotContain("--lr", r.Err);
        Assert.False(File.Exists(Path.Combine(outDir, "run.json")), "run.json left behind");
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void AThreeChannelInitOnGreyDataSuggestsChannels()
    {
        using var dir = new TempDir();
        string rgb = dir.File("rgb.safetensors");
        torch.manual_seed(TestSeed.For());
        using (var model = ModelSpec.For("smallcnn", 3, 28, 28, 10).Create()) SaveState(model, rgb);
        var r = CliRunner.Run("train", "--out", dir.File("run"), "--model", "smallcnn", "--epochs", "1", "--train-count", "100", "--init", rgb, "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("takes 3-channel images and the data have 1", r.Err);
        Assert.Contains("--channels 3", r.Err);
    }

    [Fact]
    public void ACorruptionRecordCutShortIsBlamedNotTheData()
    {
        using var dir = new TempDir();
        // Cut in the middle of the file: not valid JSON any more.
        string copy = fx.Copy(dir);
        string path = Path.Combine(copy, "corruption.json");
        var full = File.ReadAllText(path);
        File.WriteAllText(path, full[..(full.Length / 2)]);
        var r = CliRunner.Run("detect-mislabeled", "--run", copy, "--methods", "tracin-last", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("corruption.json: damaged label-corruption record", r.Err);
        Assert.DoesNotContain("fingerprint", r.Err);
        AssertClean(r.Err);

        // Cut to its first ten entries and closed again: valid JSON, but not the run's record.
        var record = Json.ReadFile<CorruptionRecord>(Path.Combine(fx.Run, "corruption.json"));
        Json.WriteFile(path, record with { Indices = record.Indices[..10], TrueLabels = record.TrueLabels[..10], CorruptedLabels = record.CorruptedLabels[..10] });
        r = CliRunner.Run("detect-mislabeled", "--run", copy, "--methods", "tracin-last", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains($"it lists 10 corrupted labels, the checkpoint records {record.Indices.Length}", r.Err);
        Assert.DoesNotContain("fingerprint", r.Err);

        // Lists missing: said so, no NullReferenceException.
        File.WriteAllText(path, "{\"fraction\": 0.1, \"seed\": 0}");
        r = CliRunner.Run("detect-mislabeled", "--run", copy, "--methods", "tracin-last", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("damaged label-corruption record: it lacks", r.Err);
        AssertClean(r.Err);
    }

    [Theory]
    [InlineData("epoch-0001.json", "{}", "it lacks the fields model, data_fingerprint")]
    [InlineData("epoch-0001.json", "", "the file is empty")]
    [InlineData("epoch-0001.json", "{\"epoch\": 1, \"model\": {\"arch", "the file is cut short")]
    [InlineData("run.json", "[1, 2]", "it holds a JSON array where an object is expected")]
    [InlineData("epoch-0001.json", "{\"epoch\": \"one\", \"model\": {}, \"data_fingerprint\": \"x\"}", "the field 'epoch' has a value of the wrong kind")]
    public void DamagedJsonFilesAreDescribedInFileTerms(string file, string content, string expected)
    {
        using var dir = new TempDir();
        string copy = fx.Copy(dir);
        File.WriteAllText(Path.Combine(copy, file), content);
        var r = CliRunner.Run("detect-mislabeled", "--run", copy, "--methods", "tracin-last", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains($"{file}: damaged", r.Err);
        Assert.Contains(expected, r.Err);
        AssertClean(r.Err);
    }

    [Fact]
    public void ATruncatedPngIsSaidToBeCutShort()
    {
        var hwc = new byte[28 * 28 * 3];
        new Random(TestSeed.For()).NextBytes(hwc);
        var png = InfluenceSharp.Reporting.PngWriter.Encode(hwc, 28, 28, 3);
        var cut = png[..(png.Length * 2 / 3)];
        var e = Assert.Throws<InfluenceSharpException>(() => ImageFile.Decode(cut, 3, "cut.png"));
        Assert.Contains("cut.png: truncated PNG", e.Message);
        Assert.False(e.Message.Contains('\0'), "a NUL character in: " + e.Message);
        Assert.Equal(28, ImageFile.Decode(png, 3, "whole.png").Width);
    }

    [Fact]
    public void AFailedImportLeavesNoLockOrRunRecord()
    {
        using var dir = new TempDir();
        // Weights of a wider Mlp: they do not fit --widths 16, found while importing.
        string wide = dir.File("wide.safetensors");
        torch.manual_seed(TestSeed.For());
        using (var model = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 32 }).Create()) SaveState(model, wide);
        string fresh = dir.File("imported");
        var r = CliRunner.Run("import", "--model", "mlp", "--widths", "16", "--weights", wide, "--data", "embedded", "--train-count", "100", "--out", fresh, "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("do not fit the model", r.Err);
        Assert.False(Directory.Exists(fresh), "the failed import left " + string.Join(", ", Directory.Exists(fresh) ? Directory.GetFileSystemEntries(fresh) : Array.Empty<string>()));

        // Into a directory that was there before: it is kept, without a half-made run.
        string existing = dir.File("existing");
        Directory.CreateDirectory(existing);
        r = CliRunner.Run("import", "--model", "mlp", "--widths", "16", "--weights", wide, "--data", "embedded", "--train-count", "100", "--out", existing, "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.False(File.Exists(Path.Combine(existing, "run.json")));
        Assert.Empty(Directory.GetFiles(existing, "epoch-*"));
    }

    [Fact]
    public void FailedHessianMethodsLeaveNoEmptyOutputFolders()
    {
        using var dir = new TempDir();
        string copy = fx.Copy(dir);
        // LiSSA with a scale far below the curvature diverges at its first step.
        string scores = dir.File("scores");
        var r = CliRunner.Run("scores", "self", "--run", copy, "--methods", "if-lissa", "--lissa-scale", "0.001", "--out", scores, "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.Contains("diverged", r.Err);
        Assert.False(Directory.Exists(scores), "left " + scores);
        r = CliRunner.Run("detect-mislabeled", "--run", copy, "--methods", "if-lissa", "--lissa-scale", "0.001", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.False(Directory.Exists(Path.Combine(copy, "detect")), "left RUN/detect");
        r = CliRunner.Run("explain", "--run", copy, "--query", "0", "--methods", "if-lissa", "--lissa-scale", "0.001", "--threads", "1", "--quiet");
        Assert.True(r.Code == 1, r.Err);
        Assert.False(Directory.Exists(Path.Combine(copy, "explain")), "left RUN/explain");
    }

    [Fact]
    public void RemovalCountsOverTheTrainingSetAreRefusedBeforeAnyWork()
    {
        using var dir = new TempDir();
        string outDir = dir.File("remove");
        var r = CliRunner.Run("evaluate", "remove", "--run", fx.Run, "--k", "100000", "--out", outDir, "--threads", "1");
        Assert.True(r.Code == 2, $"exit {r.Code}: {r.Err}");
        Assert.Contains("--remove-counts 100000: 100000 must be less than the run's 300 training examples", r.Err);
        Assert.DoesNotContain("pairwise", r.Err);   // no scoring progress: refused before the work
        Assert.False(Directory.Exists(outDir));
    }
}
