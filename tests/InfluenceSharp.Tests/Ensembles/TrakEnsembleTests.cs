using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Ensembles;

/// <summary>TRAK's member selection as a library call (no command line): epochs per source, and the
/// refusals of other data, another architecture and a checkpoint listed twice.</summary>
public class TrakEnsembleTests
{
    static readonly ModelSpec Mlp = ModelSpec.For("mlp", 1, 28, 28, 10);

    static Checkpoint C(string path, int epoch, string data = "d1", ModelSpec? model = null) =>
        new(path, new CheckpointInfo { Epoch = epoch, Model = model ?? Mlp, DataFingerprint = data });

    [Fact]
    public void SelectsTheLastAllOrTheGivenEpochsOfEverySourceInOrder()
    {
        var a = new List<Checkpoint> { C("/a/1", 1), C("/a/2", 2), C("/a/3", 3) };
        var b = new List<Checkpoint> { C("/b/1", 1), C("/b/2", 2) };
        var sources = new[] { ("a", a), ("b", b) };
        string Paths(List<Checkpoint> l) => string.Join(" ", l.Select(c => c.WeightsPath));
        Assert.Equal("/a/3 /b/2", Paths(TrakEnsemble.Members(sources, null, "e", "d1", Mlp)));
        Assert.Equal("/a/1 /a/2 /a/3 /b/1 /b/2", Paths(TrakEnsemble.Members(sources, Array.Empty<int>(), "e", "d1", Mlp)));
        Assert.Equal("/a/2 /a/1 /b/2 /b/1", Paths(TrakEnsemble.Members(sources, new[] { 2, 1 }, "e", "d1", Mlp)));
        var e = Assert.Throws<InfluenceSharpException>(() => TrakEnsemble.Members(sources, new[] { 3 }, "--member-epochs 3", "d1", Mlp));
        Assert.Equal("--member-epochs 3: b has no checkpoint of epoch 3 (it has epochs 1,2)", e.Message);
    }

    [Fact]
    public void RefusesOtherDataAnotherArchitectureAndDuplicates()
    {
        var run = new List<Checkpoint> { C("/a/1", 1) };
        var e = Assert.Throws<InfluenceSharpException>(() => TrakEnsemble.Members(new[] { ("a", run), ("x", new List<Checkpoint> { C("/x/1", 1, data: "d2") }) }, null, "e", "d1", Mlp));
        Assert.StartsWith("x: /x/1 was trained on other data", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => TrakEnsemble.Members(
            new[] { ("a", run), ("y", new List<Checkpoint> { C("/y/1", 1, model: Mlp with { HiddenWidths = new[] { 7 } }) }) }, null, "e", "d1", Mlp));
        Assert.Contains("must share the architecture", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => TrakEnsemble.Members(new[] { ("a", run), ("a again", run) }, null, "e", "d1", Mlp));
        Assert.Contains("listed twice", e.Message);
    }
}
