using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Scores;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Cli;

/// <summary>--proj-layout hadamard from the CLI scores exactly as the library's TRAK with the Hadamard
/// layout and the same k and seed, and differs from the dense layout's scores.</summary>
[Collection("cli")]
public class HadamardCliTests
{
    [Fact]
    public void TrakWithTheHadamardLayoutMatchesTheLibrary()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = CliRunner.Run("train", "--data", "embedded", "--model", "logreg", "--epochs", "1", "--train-count", "200", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("scores", "pairwise", "--run", run, "--methods", "trak", "--proj-layout", "hadamard", "--proj-dim", "256",
            "--query-count", "5", "--damping", "0.01", "--out", dir.File("h"));
        Assert.True(r.Code == 0, r.Err);
        using var got = Npy.Read(Path.Combine(dir.File("h"), "scores.npy"));

        var last = Checkpoint.List(run)[^1];
        var data = RunData.For(last, null);
        var queries = data.Test.Subset(Enumerable.Range(0, 5).ToArray(), "q");
        using var trak = new Trak(new[] { last.LoadModel() }, new TrakOptions
        {
            Damping = 0.01, Projection = new ProjectionOptions { Layout = ProjectionLayout.Hadamard, Dim = 256, Seed = 0 },
        });
        var expected = trak.PairwiseMatrix(queries, data.Train).to(ScalarType.Float64);
        double err = ((got.to(ScalarType.Float64) - expected).norm() / expected.norm()).item<double>();
        Assert.True(err < 1e-4, $"relative error {err}");

        r = CliRunner.Run("scores", "pairwise", "--run", run, "--methods", "trak", "--proj-layout", "dense", "--proj-dim", "256",
            "--query-count", "5", "--damping", "0.01", "--out", dir.File("d"));
        Assert.True(r.Code == 0, r.Err);
        using var dense = Npy.Read(Path.Combine(dir.File("d"), "scores.npy"));
        Assert.False(dense.allclose(got, rtol: 1e-3));

        // --proj-dim beyond the padded parameter count (7,850 -> 8,192) is an error naming the limit.
        r = CliRunner.Run("scores", "pairwise", "--run", run, "--methods", "trak", "--proj-layout", "hadamard", "--proj-dim", "9000",
            "--query-count", "5", "--out", dir.File("x"));
        Assert.Equal(1, r.Code);
        Assert.Contains("8192", r.Err);
        Assert.DoesNotContain(" at ", r.Err);
    }
}
