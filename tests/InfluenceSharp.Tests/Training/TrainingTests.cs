using System.Buffers.Binary;
using System.Text;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Training;

public class TrainingTests
{
    [Fact]
    public void SmallCnnLearnsEmbeddedFashionMnistAndCheckpointsEveryEpoch()
    {
        using var dir = new TempDir();
        var s = Embedded.Split;
        var spec = ModelSpec.For("smallcnn", 1, 28, 28, 10);
        var result = new Trainer(new TrainOptions { Epochs = 3, Seed = 1 }).Train(spec, s.Train, s.Test, dir.Path);
        Assert.Equal(3, result.Checkpoints.Count);
        Assert.True(result.History[^1].TrainLoss < result.History[0].TrainLoss, "training loss did not go down");
        Assert.True(result.History[^1].TestAccuracy > 0.80, $"test accuracy {result.History[^1].TestAccuracy}");
        var list = Checkpoint.List(dir.Path);
        Assert.Equal(new[] { 1, 2, 3 }, list.Select(c => c.Info.Epoch));
        Assert.Equal(0.05, list[0].Info.LearningRate, 9);
        Assert.Equal(s.Train.Fingerprint(), list[2].Info.DataFingerprint);
        // The loaded last checkpoint predicts exactly like the in-memory model.
        var loaded = list[2].LoadModel();
        Assert.Equal(Trainer.Evaluate(result.Model, s.Test).Accuracy, Trainer.Evaluate(loaded, s.Test).Accuracy);
    }

    [Fact]
    public void SameSeedGivesBitIdenticalWeights()
    {
        var s = Embedded.Split;
        var small = s.Train.Subset(Enumerable.Range(0, 1500).ToArray());
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 32 });
        var o = new TrainOptions { Epochs = 2, Seed = 7, BatchSize = 64, Schedule = LrSchedule.OneCycle };
        var a = new Trainer(o).Train(spec, small, null, null).Model.state_dict();
        var b = new Trainer(o).Train(spec, small, null, null).Model.state_dict();
        var c = new Trainer(o with { Seed = 8 }).Train(spec, small, null, null).Model.state_dict();
        foreach (var k in a.Keys) Assert.True(TensorAssert.BitEqual(a[k], b[k]), k);
        Assert.False(TensorAssert.BitEqual(a["fc1.weight"], c["fc1.weight"]));
    }

    [Fact]
    public void OneCycleScheduleRisesToPeakThenFallsToZero()
    {
        var o = new TrainOptions { Epochs = 10, LearningRate = 0.4, Schedule = LrSchedule.OneCycle, PeakEpoch = 2 };
        Assert.Equal(0, o.LrAt(0, 100), 12);
        Assert.Equal(0.2, o.LrAt(100, 100), 12);
        Assert.Equal(0.4, o.LrAt(200, 100), 12);
        Assert.Equal(0.2, o.LrAt(600, 100), 12);
        Assert.Equal(0, o.LrAt(1000, 100), 12);
    }
}

public class CheckpointTests
{
    [Fact]
    public void RoundTripIsBitExactIncludingBatchNormBuffers()
    {
        using var dir = new TempDir();
        torch.manual_seed(TestSeed.For());
        var spec = ModelSpec.For("resnet9", 3, 32, 32, 10);
        var model = spec.Create();
        using (no_grad()) foreach (var (_, t) in model.state_dict()) if (t.is_floating_point()) t.copy_(torch.randn_like(t));
        var path = dir.File("epoch-0001.safetensors");
        Checkpoint.Save(model, path, new CheckpointInfo { Model = spec, DataFingerprint = "x", Epoch = 1 });
        var back = Checkpoint.Open(path).LoadModel();
        var a = model.state_dict(); var b = back.state_dict();
        Assert.Equal(a.Keys.OrderBy(k => k), b.Keys.OrderBy(k => k));
        Assert.Contains("2.module.0.1.running_mean", a.Keys);
        Assert.Contains("9.weight", a.Keys);
        foreach (var k in a.Keys) Assert.True(TensorAssert.BitEqual(a[k], b[k]), k);
    }

    /// <summary>A safetensors file laid out by hand, byte by byte, as PyTorch's safetensors writes it.</summary>
    [Fact]
    public void ImportsAHandWrittenSafetensorsFile()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        float[] w = Enumerable.Range(0, 10 * 784).Select(_ => (float)rng.NextDouble() - 0.5f).ToArray();
        float[] bias = Enumerable.Range(0, 10).Select(_ => (float)rng.NextDouble()).ToArray();
        string header = "{\"__metadata__\":{\"format\":\"pt\"},\"fc.bias\":{\"dtype\":\"F32\",\"shape\":[10],\"data_offsets\":[0,40]}," +
                        "\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,784],\"data_offsets\":[40," + (40 + w.Length * 4) + "]}}";
        var hb = Encoding.UTF8.GetBytes(header);
        var file = new List<byte>();
        var len = new byte[8]; BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)hb.Length);
        file.AddRange(len); file.AddRange(hb);
        foreach (var f in bias.Concat(w)) { var fb = new byte[4]; BinaryPrimitives.WriteSingleLittleEndian(fb, f); file.AddRange(fb); }
        File.WriteAllBytes(dir.File("pt.safetensors"), file.ToArray());

        var model = ModelSpec.For("logreg", 1, 28, 28, 10).Create();
        Checkpoint.LoadWeights(model, dir.File("pt.safetensors"));
        var sd = model.state_dict();
        Assert.Equal(w, sd["fc.weight"].data<float>().ToArray());
        Assert.Equal(bias, sd["fc.bias"].data<float>().ToArray());
    }

    [Fact]
    public void RefusesACheckpointFromAnotherArchitectureOrShape()
    {
        using var dir = new TempDir();
        var mlp = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 64 });
        Checkpoint.Save(mlp.Create(), dir.File("mlp.safetensors"), new CheckpointInfo { Model = mlp, DataFingerprint = "x" });
        var e = Assert.Throws<InfluenceSharpException>(() => Checkpoint.LoadWeights(ModelSpec.For("smallcnn", 1, 28, 28, 10).Create(), dir.File("mlp.safetensors")));
        Assert.Contains("mlp.safetensors", e.Message); Assert.Contains("missing conv1.weight", e.Message); Assert.Contains("'mlp'", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => Checkpoint.LoadWeights(ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 32 }).Create(), dir.File("mlp.safetensors")));
        Assert.Contains("shape mismatch fc1.weight", e.Message);
    }

    [Fact]
    public void CorruptSafetensorsFilesGetClearErrors()
    {
        using var dir = new TempDir();
        var t = new Dictionary<string, Tensor> { ["a"] = torch.randn(3, 4), ["b"] = torch.arange(5L) };
        SafeTensors.Save(dir.File("ok.safetensors"), t, new Dictionary<string, string> { ["k"] = "v" });
        using (var back = SafeTensors.Load(dir.File("ok.safetensors")))
        {
            Assert.True(TensorAssert.BitEqual(back["a"], t["a"]));
            Assert.True(TensorAssert.BitEqual(back["b"], t["b"]));
            Assert.Equal("v", back.Metadata["k"]);
        }
        var bytes = File.ReadAllBytes(dir.File("ok.safetensors"));
        File.WriteAllBytes(dir.File("trunc.safetensors"), bytes[..^8]);
        var e = Assert.Throws<InfluenceSharpException>(() => SafeTensors.Load(dir.File("trunc.safetensors")));
        Assert.Contains("trunc.safetensors", e.Message);
        File.WriteAllBytes(dir.File("garbage.safetensors"), Encoding.ASCII.GetBytes("this is not a tensor file at all"));
        e = Assert.Throws<InfluenceSharpException>(() => SafeTensors.Load(dir.File("garbage.safetensors")));
        Assert.Contains("garbage.safetensors", e.Message);
    }
}

public class SgdTests
{
    /// <summary>Our SGD (kept because TorchSharp's converts Scalars implicitly) follows PyTorch's rule.</summary>
    [Fact]
    public void MatchesTorchSharpsSgdOverSeveralSteps()
    {
        int seed = TestSeed.For();
        nn.Module<Tensor, Tensor> Make() { torch.manual_seed(seed); return nn.Linear(6, 3).to(ScalarType.Float64); }
        var a = Make(); var b = Make();
        var x = torch.randn(8, 6, dtype: ScalarType.Float64); var y = torch.randint(0, 3, new long[] { 8 });
        using var ours = new Sgd(a.parameters(), momentum: 0.9, weightDecay: 0.01);
        var theirs = torch.optim.SGD(b.parameters(), 0.1, momentum: 0.9, weight_decay: 0.01);
        foreach (var lr in new[] { 0.1, 0.05, 0.2 })
        {
            ours.ZeroGrad(); nn.functional.cross_entropy(a.call(x), y).backward(); ours.Step(lr);
            foreach (var g in theirs.ParamGroups) g.LearningRate = lr;
            theirs.zero_grad(); nn.functional.cross_entropy(b.call(x), y).backward(); theirs.step();
        }
        foreach (var ((n, pa), (_, pb)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(pa.allclose(pb, rtol: 1e-12, atol: 1e-14), n);
    }
}
