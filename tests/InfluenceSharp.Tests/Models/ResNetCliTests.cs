using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Models;

[Collection("cli")]   // Console redirection is process-wide
public class ResNetCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>`train --model resnet18` on 32×32 RGB data (CIFAR-10 batches written here) with the
    /// backbone frozen, then EK-FAC, TracIn and TRAK mislabel detection on the run: BatchNorm in eval
    /// mode, only the trainable layer (fc) tracked.</summary>
    static string WriteCifar(TempDir dir)
    {
        string data = dir.File("cifar");
        Directory.CreateDirectory(data);
        var rng = new Random(TestSeed.For(nameof(WriteCifar)));
        ImageDataset Make(int n, string name)
        {
            var px = new byte[n * 3072];
            var labels = new int[n];
            for (int i = 0; i < n; i++)
            {
                labels[i] = i % 10;
                for (int p = 0; p < 3072; p++) px[i * 3072 + p] = (byte)rng.Next(256);
            }
            return new ImageDataset(name, px, labels, 3, 32, 32, 10);
        }
        for (int b = 1; b <= 5; b++) Cifar10Reader.WriteBatch(Path.Combine(data, $"data_batch_{b}.bin"), Make(8, $"b{b}"));
        Cifar10Reader.WriteBatch(Path.Combine(data, "test_batch.bin"), Make(10, "test"));
        return data;
    }

    [Fact]
    public void TrainResNet18WithAFrozenBackboneThenEkfacTracInTrak()
    {
        using var dir = new TempDir();
        string data = WriteCifar(dir);
        string run = dir.File("run");
        var r = Run("train", "--data", $"cifar10:{data}", "--model", "resnet18", "--freeze", "conv1,bn1,layer1,layer2,layer3,layer4",
            "--epochs", "1", "--batch-size", "20", "--lr", "0.01", "--corrupt", "0.1", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var cp = Checkpoint.List(run).Single();
        Assert.Equal("resnet18", cp.Info.Model.Architecture);
        Assert.Equal(new[] { "fc" }, TrackedLayer.Find(cp.LoadModel()).Select(l => l.Name));
        r = Run("detect-mislabeled", "--run", run, "--methods", "ekfac,tracin,trak", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        using var det = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "detect", "detection.json")));
        Assert.Equal(3, det.RootElement.GetArrayLength());
    }

    /// <summary>`--pretrained imagenet`: the run starts from the converted ImageNet weights (cached in
    /// $INFLUENCESHARP_CACHE) of the CNTK network with its input transform, fc fresh (10 classes; the
    /// backbone has no head), the architecture and preprocessing recorded in run.json and printed.</summary>
    [Fact]
    public void TrainResNet18FromImageNetWeights()
    {
        if (InfluenceSharp.Models.Pretrained.FindImageNetResNet18Onnx() is null) return;   // see PretrainedTests
        using var dir = new TempDir();
        string data = WriteCifar(dir), run = dir.File("run"), cache = dir.File("cache");
        string? old = Environment.GetEnvironmentVariable(InfluenceSharp.Models.Pretrained.CacheVariable);
        Environment.SetEnvironmentVariable(InfluenceSharp.Models.Pretrained.CacheVariable, cache);
        (int Code, string Out, string Err) r;
        try
        {
            r = Run("train", "--data", $"cifar10:{data}", "--model", "resnet18", "--pretrained", "imagenet",
                "--freeze", "conv1,bn1,layer1,layer2,layer3,layer4", "--epochs", "1", "--batch-size", "20", "--lr", "0.01", "--out", run);
            Assert.True(r.Code == 0, r.Err);
            Assert.Contains("pretrained: ImageNet ResNet-18", r.Err);
            Assert.Contains("minus the ImageNet mean image", r.Err);
        }
        finally { Environment.SetEnvironmentVariable(InfluenceSharp.Models.Pretrained.CacheVariable, old); }
        var record = RunRecord.TryRead(run)!;
        Assert.Equal(InfluenceSharp.Models.ModelSpec.ImageNetResNet18, record.Model.Architecture);
        Assert.Contains("resized bilinearly to 32x32", record.Model.Preprocessing);
        string cached = Assert.Single(Directory.GetFiles(cache, "resnet18-imagenet-*.safetensors"));
        Assert.Equal(cached, record.Training.InitFile);
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, record.InitSkipped);
        using var pre = InfluenceSharp.Formats.SafeTensors.Load(cached);
        using var trained = InfluenceSharp.Formats.SafeTensors.Load(Path.Combine(run, "epoch-0001.safetensors"));
        foreach (var name in new[] { "conv1.weight", "layer4.2.bn2.running_var", "input.shift" })     // frozen: exactly the ImageNet values
            Assert.True(pre.Tensors[name].eq(trained.Tensors[name]).all().item<bool>(), name);

        // A query image goes through the run's own preprocessing (said on stderr): the same test image as a
        // PNG file gets the same proponents as by its index.
        r = Run("explain", "--run", run, "--query", "0", "--method", "tracin-last", "--top", "4");
        Assert.True(r.Code == 0, r.Err);
        string ExplainJson() => File.ReadAllText(Path.Combine(run, "explain", "explain-tracin-last.json"));
        (int Index, double Score)[] Proponents() => JsonDocument.Parse(ExplainJson()).RootElement[0].GetProperty("proponents")
            .EnumerateArray().Select(p => (p.GetProperty("index").GetInt32(), p.GetProperty("score").GetDouble())).ToArray();
        var fromIndex = Proponents();
        var test = (ImageDataset)DataSource.Load($"cifar10:{data}").Test;
        // The PNG holds the image as shown (channels interleaved), not the data set's planar layout.
        File.WriteAllBytes(dir.File("q.png"), InfluenceSharp.Reporting.PngWriter.EncodeExample(test, 0)!);
        r = Run("explain", "--run", run, "--query-image", dir.File("q.png"), "--query-label", test.Labels[0].ToString(), "--method", "tracin-last", "--top", "4");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("then the model's own input transform: RGB in 0-255 minus the ImageNet mean image", r.Err);
        var fromImage = Proponents();
        Assert.Equal(fromIndex.Select(p => p.Index), fromImage.Select(p => p.Index));
        for (int i = 0; i < fromIndex.Length; i++) Assert.Equal(fromIndex[i].Score, fromImage[i].Score, 1e-3 * Math.Abs(fromIndex[i].Score));
    }
}
