using InfluenceSharp.Models;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Training;

/// <summary>A state dict in the byte layout torch.save writes (zip archive, pickle protocol 2,
/// _rebuild_tensor_v2 with persistent storage ids, the OrderedDict's _metadata), produced by
/// Fixtures/torch_save.py without PyTorch or PyBridge: --init and import read it to the exact values.</summary>
[Collection("cli")]
public class TorchSaveFixtureTests
{
    static string Fixture => Path.Combine(AppContext.BaseDirectory, "Fixtures", "mlp8.pt");

    /// <summary>The formula torch_save.py wrote: sin(0.37 (i + 1)(t + 1)) / (t + 2), in float32.</summary>
    static float[] Expected(int t, int n) => Enumerable.Range(0, n).Select(i => (float)(Math.Sin(0.37 * (i + 1) * (t + 1)) / (t + 2))).ToArray();

    [Fact]
    public void ReadsTorchSaveLayoutToTheWrittenValues()
    {
        Assert.True(File.Exists(Fixture), Fixture);
        var model = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 8 }).Create();
        var init = InitWeights.Apply(model, Fixture, strictHead: true);
        Assert.Empty(init.Skipped);
        var sd = model.state_dict();
        string[] names = { "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias" };
        for (int t = 0; t < names.Length; t++)
        {
            var got = sd[names[t]].to(ScalarType.Float32).flatten().data<float>().ToArray();
            Assert.Equal(Expected(t, got.Length), got);
        }
        // Another architecture is refused naming the parameter.
        var wide = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 9 }).Create();
        Assert.Contains("fc1.weight", Assert.Throws<InfluenceSharpException>(() => InitWeights.Apply(wide, Fixture)).Message);
    }

    [Fact]
    public void ImportedFixtureIsAttributed()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("import", "--model", "mlp", "--widths", "8", "--weights", Fixture, "--data", "embedded", "--train-count", "100",
            "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var model = Checkpoint.List(run)[^1].LoadModel();
        Assert.Equal(Expected(3, 10), model.state_dict()["fc2.bias"].data<float>().ToArray());
        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "ekfac,tracin-last", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(run, "detect", "self_influence-ekfac.npy")));
    }
}
