using InfluenceSharp.Scores;
using TorchSharp;

namespace InfluenceSharp.Tests.Cli;

/// <summary>--methods ekfac-last is EK-FAC on the model's last Linear layer: the same self-influence
/// as ekfac --layers naming that layer, and not the all-layer EK-FAC's.</summary>
[Collection("cli")]
public class EkfacLastCliTests
{
    [Fact]
    public void EkfacLastIsEkfacOnTheLastLinearLayer()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", "embedded", "--model", "mlp", "--widths", "12", "--epochs", "1", "--train-count", "200", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        string Self(string name, params string[] extra)
        {
            var res = CliRunner.Run(new[] { "scores", "self", "--run", run, "--out", dir.File(name) }.Concat(extra).ToArray());
            Assert.True(res.Code == 0, res.Err);
            return Path.Combine(dir.File(name), "self_influence.npy");
        }
        using var last = Npy.Read(Self("last", "--methods", "ekfac-last"));
        using var fc2 = Npy.Read(Self("fc2", "--methods", "ekfac", "--layers", "fc2"));
        using var all = Npy.Read(Self("all", "--methods", "ekfac"));
        Assert.True(last.allclose(fc2, rtol: 1e-6, atol: 1e-9));
        Assert.False(last.allclose(all, rtol: 1e-2));

        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "ekfac-last", "--layers", "fc1");
        Assert.Equal(2, r.Code);
        Assert.Contains("--layers", r.Err);
    }
}
