using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Tensor = TorchSharp.torch.Tensor;

namespace InfluenceSharp.Tests.Models;

public class PretrainedTests(ITestOutputHelper output)
{
    static string Photo(string name) => Path.Combine(AppContext.BaseDirectory, "Fixtures", "photos", name);

    /// <summary>The ONNX files in the NuGet packages folder (the test project downloads the package), or null (skipped).</summary>
    (string Onnx, string Preprocess)? Files()
    {
        if (Pretrained.FindImageNetResNet18Onnx() is { } onnx && Pretrained.FindPreprocessOnnx(onnx) is { } prep) return (onnx, prep);
        output.WriteLine($"SKIPPED: {Pretrained.PackageName} {Pretrained.PackageVersion} is not in the NuGet packages folder");
        return null;
    }

    /// <summary>The model `train --model resnet18 --pretrained imagenet` builds for these data: the
    /// spec, the converted weights with the input transform, eval mode.</summary>
    static ResNet18 PretrainedFor(LabeledDataset train, string cacheDir, string onnx, string prep)
    {
        (float[], float[])? norm = train is ImageDataset img ? img.Normalization : null;
        var weights = Pretrained.ImageNetResNet18(train.Channels, train.Height, train.Width, norm, cacheDir, onnx, prep);
        var spec = ModelSpec.For("resnet18", train.Channels, train.Height, train.Width, train.NumClasses) with { Architecture = ModelSpec.ImageNetResNet18 };
        var model = (ResNet18)spec.Create();
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, InitWeights.Apply(model, weights.Path).Skipped);   // the backbone has no classifier
        model.eval();
        return model;
    }

    /// <summary>The oracle: real photos (an image folder of two CC0 photos, read by the CLI's reader at
    /// 224×224), prepared by the tool (its normalisation, then the model's ImageNet input transform),
    /// give the same 512 pooled features in the converted network as ONNX Runtime computes from the same
    /// decoded pixels with the package's own two models (ResNetPreprocess.onnx: RGB→BGR, minus the mean
    /// image; then ResNet18.onnx), to float32 tolerance.</summary>
    [Fact]
    public void ConvertedNetworkWithItsPreprocessingReproducesOnnxRuntimeOnPhotos()
    {
        if (Files() is not var (onnx, prep)) return;
        using var dir = new TempDir();
        foreach (var (cls, name) in new[] { ("cat", "chelsea.png"), ("cup", "coffee.png") })
            foreach (var split in new[] { "train", "test" })
            {
                Directory.CreateDirectory(Path.Combine(dir.Path, "photos", split, cls));
                File.Copy(Photo(name), Path.Combine(dir.Path, "photos", split, cls, name));
            }
        var data = DataSource.Load($"imagefolder:{dir.File("photos")}?size=224x224");
        var train = (ImageDataset)data.Train;
        Assert.Equal((3, 224, 224), (train.Channels, train.Height, train.Width));
        using var scope = NewDisposeScope();
        var model = PretrainedFor(train, dir.File("cache"), onnx, prep);
        Tensor ours;
        using (no_grad()) ours = model.Features(train.Inputs(new[] { 0, 1 }));

        using var pre = new InferenceSession(prep);
        using var net = new InferenceSession(onnx);
        for (int i = 0; i < 2; i++)
        {
            // The decoded, resized RGB bytes as floats in 0–255: what ML.NET's pixel extractor gives the package's models.
            var rgb = train.DisplayPixels(i).Select(b => (float)b).ToArray();
            using var p = pre.Run(new[] { NamedOnnxValue.CreateFromTensor(pre.InputMetadata.Keys.Single(), new DenseTensor<float>(rgb, new[] { 1, 3, 224, 224 })) });
            var bgr = p.Single().AsEnumerable<float>().ToArray();
            using var r = net.Run(new[] { NamedOnnxValue.CreateFromTensor(net.InputMetadata.Keys.Single(), new DenseTensor<float>(bgr, new[] { 1, 3, 224, 224 })) });
            var expected = torch.tensor(r.Single(o => o.Name == net.OutputMetadata.Keys.Single()).AsEnumerable<float>().ToArray());
            Assert.Equal(512, expected.shape[0]);
            Assert.True(expected.abs().max().item<float>() > 1f);    // real features, not zeros
            double err = ((ours[i] - expected).abs().max() / expected.abs().max()).item<float>();
            double cos = nn.functional.cosine_similarity(ours[i].unsqueeze(0), expected.unsqueeze(0), 1).item<float>();
            output.WriteLine($"photo {i}: max relative difference {err:E2}, cosine {cos:F7}");
            Assert.True(err < 1e-4, $"photo {i}: max relative difference {err}");
        }
        // The photos differ: the comparison is not of two constant vectors.
        Assert.True((ours[0] - ours[1]).abs().max().item<float>() > 0.1f);
    }

    /// <summary>Grey data: the model replicates the grey channel to R, G, B, so a grey data set gives
    /// exactly the features of the same images stored as RGB; the cached conversion is reused.</summary>
    [Fact]
    public void GreyInputsAreTheRgbNetworkOnReplicatedChannels()
    {
        if (Files() is not var (onnx, prep)) return;
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        var src = (ImageDataset)Embedded.Split.Test.Subset(new[] { 0, 1, 2, 3 });
        var grey = new ImageDataset("grey", Resized(src, 64), src.Labels, 1, 64, 64, 10);
        var rgbPixels = new byte[grey.Count * 3 * 64 * 64];
        for (int i = 0; i < grey.Count; i++)
            for (int c = 0; c < 3; c++) Buffer.BlockCopy(grey.Pixels, i * 4096, rgbPixels, (i * 3 + c) * 4096, 4096);
        var rgb = new ImageDataset("rgb", rgbPixels, src.Labels, 3, 64, 64, 10);
        var a = PretrainedFor(grey, dir.File("cache"), onnx, prep);
        var b = PretrainedFor(rgb, dir.File("cache"), onnx, prep);
        Assert.Equal(2, Directory.GetFiles(dir.File("cache")).Length);
        PretrainedFor(grey, dir.File("cache"), onnx, prep);          // cached: no third file
        Assert.Equal(2, Directory.GetFiles(dir.File("cache")).Length);
        using (no_grad())
        {
            var fa = a.Features(grey.Inputs(new[] { 0, 1, 2, 3 }));
            var fb = b.Features(rgb.Inputs(new[] { 0, 1, 2, 3 }));
            double err = ((fa - fb).abs().max() / fb.abs().max()).item<float>();
            Assert.True(err < 1e-4, $"grey vs RGB: {err}");
        }
    }

    /// <summary>Fashion-MNIST images resized bilinearly (as an image folder read at 64×64 does).</summary>
    static byte[] Resized(ImageDataset d, int size)
    {
        var px = new byte[d.Count * d.Channels * size * size];
        for (int i = 0; i < d.Count; i++)
        {
            var img = new ImageFile(d.Width, d.Height, d.Channels, d.DisplayPixels(i)).Resize(size, size);
            Buffer.BlockCopy(img.Pixels, 0, px, i * img.Pixels.Length, img.Pixels.Length);
        }
        return px;
    }

    /// <summary>The probe: on 400 embedded Fashion-MNIST images at 64×64 (grey, as `train` reads them),
    /// the probe that `train --freeze conv1,bn1,layer1,layer2,layer3,layer4` runs (the frozen backbone's
    /// 512 pooled features into a fresh Linear layer trained by the library's SGD: lr 0.01, momentum
    /// 0.9, weight decay 5e-4, batch 64), on the ImageNet network beats the same probe on a randomly
    /// initialised ResNet-18 (what `--model resnet18` starts from) on 200 held-out images by at least 10
    /// points. A converged logistic regression on standardised features is printed beside it: random
    /// conv features are good for Fashion-MNIST once rescaled, so that margin is smaller.</summary>
    [Fact]
    public void LinearProbeOnPretrainedFeaturesBeatsRandomWeights()
    {
        if (Files() is not var (onnx, prep)) return;
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        var trainSrc = (ImageDataset)Embedded.Split.Train.Subset(DataSource.BalancedSubset(Embedded.Split.Train, 400, 0));
        var testSrc = (ImageDataset)Embedded.Split.Test.Subset(DataSource.BalancedSubset(Embedded.Split.Test, 200, 0));
        var train = new ImageDataset("train", Resized(trainSrc, 64), trainSrc.Labels, 1, 64, 64, 10);
        var test = new ImageDataset("test", Resized(testSrc, 64), testSrc.Labels, 1, 64, 64, 10);
        torch.manual_seed(TestSeed.For());
        var random = new ResNet18(1, 10);
        random.eval();
        var pretrained = PretrainedFor(train, dir.File("cache"), onnx, prep);
        var (fPreTrain, fPreTest) = (Features(pretrained, train), Features(pretrained, test));
        var (fRndTrain, fRndTest) = (Features(random, train), Features(random, test));
        double sgdPre = SgdProbe(fPreTrain, train, fPreTest, test), sgdRandom = SgdProbe(fRndTrain, train, fRndTest, test);
        double lrPre = StandardisedProbe(fPreTrain, train, fPreTest, test), lrRandom = StandardisedProbe(fRndTrain, train, fRndTest, test);
        output.WriteLine($"SGD probe (as train --freeze): ImageNet {sgdPre:P1}, random {sgdRandom:P1}");
        output.WriteLine($"logistic regression on standardised features: ImageNet {lrPre:P1}, random {lrRandom:P1}");
        Assert.True(sgdPre >= sgdRandom + 0.10, $"ImageNet {sgdPre:P1} vs random {sgdRandom:P1}");
        Assert.True(sgdPre >= 0.6, $"ImageNet probe {sgdPre:P1}");
    }

    static Tensor Features(ResNet18 model, ImageDataset d)
    {
        using var _ = no_grad();
        var parts = new List<Tensor>();
        for (int s = 0; s < d.Count; s += 100)
            parts.Add(model.Features(d.Inputs(Enumerable.Range(s, Math.Min(100, d.Count - s)).ToArray())));
        return cat(parts, 0);
    }

    /// <summary>A fresh Linear layer on fixed features, trained by the library's trainer as `train`
    /// trains fc behind a frozen backbone (BatchNorm in eval mode, so the features do not change).</summary>
    static double SgdProbe(Tensor xtr, ImageDataset train, Tensor xte, ImageDataset test)
    {
        FloatDataset Flat(Tensor x, ImageDataset d) => new(d.Name, x.contiguous().data<float>().ToArray(), new[] { 512 }, d.Labels, d.NumClasses);
        torch.manual_seed(1);
        var options = new TrainOptions { Epochs = 10, BatchSize = 64, LearningRate = 0.01, Momentum = 0.9, WeightDecay = 5e-4, Seed = 0 };
        var result = new Trainer(options).Train(ModelSpec.For("logreg", 1, 1, 512, 10), Flat(xtr, train), Flat(xte, test), null);
        return result.History[^1].TestAccuracy;
    }

    static double StandardisedProbe(Tensor xtr64, ImageDataset train, Tensor xte64, ImageDataset test)
    {
        var xtr = xtr64.to(ScalarType.Float64); var xte = xte64.to(ScalarType.Float64);
        var mu = xtr.mean(new long[] { 0 }, keepdim: true); var sd = xtr.std(0, keepdim: true) + 1e-6;
        xtr = (xtr - mu) / sd; xte = (xte - mu) / sd;
        var ytr = torch.tensor(train.Labels.Select(v => (long)v).ToArray());
        var w = new TorchSharp.Modules.Parameter(zeros(new long[] { 512, 10 }, ScalarType.Float64));
        var b = new TorchSharp.Modules.Parameter(zeros(new long[] { 10 }, ScalarType.Float64));
        var opt = optim.LBFGS(new[] { w, b }, lr: 1, max_iter: 200, history_size: 20);
        Tensor Closure()
        {
            opt.zero_grad();
            var loss = nn.functional.cross_entropy(xtr.matmul(w) + b, ytr) + 1e-2 * w.pow(2).sum();
            loss.backward();
            return loss;
        }
        opt.step(Closure);
        using var noGrad = no_grad();
        var pred = (xte.matmul(w) + b).argmax(1);
        return pred.eq(torch.tensor(test.Labels.Select(v => (long)v).ToArray())).to(ScalarType.Float64).mean().item<double>();
    }

    /// <summary>First use without the package: restored from the configured feeds (here a local folder
    /// feed holding the package's .nupkg, so no network is needed) into the packages folder, with
    /// progress; the second call finds it there and restores nothing.</summary>
    [Fact]
    public void PackageIsRestoredFromTheConfiguredFeedsAtFirstUse()
    {
        string nupkg = Path.Combine(Pretrained.PackageDir(), $"{Pretrained.PackageId}.{Pretrained.PackageVersion}.nupkg");
        if (!File.Exists(nupkg)) { output.WriteLine($"SKIPPED: {nupkg} not found"); return; }
        using var dir = new TempDir();
        string feed = dir.File("feed"), packages = dir.File("packages");
        Directory.CreateDirectory(feed);
        File.Copy(nupkg, Path.Combine(feed, Path.GetFileName(nupkg)));
        string config = WriteConfig(dir, feed);
        var updates = new List<ProgressUpdate>();
        var progress = new SyncProgress(updates.Add);
        var (onnx, prep) = Pretrained.ImageNetFiles(progress, packages, config);
        Assert.StartsWith(Path.GetFullPath(packages), Path.GetFullPath(onnx));
        Assert.True(File.Exists(onnx) && File.Exists(prep));
        Assert.Equal(Checkpoint.HashFile(Pretrained.FindImageNetResNet18Onnx()!), Checkpoint.HashFile(onnx));
        var last = Assert.Single(updates, u => u.Final);
        Assert.Contains("restoring", last.Label);
        Assert.Equal("MB", last.Unit);
        // Cached: found in the packages folder, no restore (the feed is gone: a restore would fail).
        Directory.Delete(feed, true);
        updates.Clear();
        Assert.Equal(onnx, Pretrained.ImageNetFiles(progress, packages, config).Onnx);
        Assert.Empty(updates);
    }

    /// <summary>Offline: the only feed is unreachable, so the restore fails with a message that names the
    /// package, the feed error and what to do, as an <see cref="InfluenceSharpException"/> (a clean CLI error).</summary>
    [Fact]
    public void RestoreFromAnUnreachableFeedFailsWithAClearMessage()
    {
        using var dir = new TempDir();
        string config = WriteConfig(dir, "https://127.0.0.1:9/v3/index.json");
        var e = Assert.Throws<InfluenceSharpException>(() => Pretrained.ImageNetFiles(null, dir.File("packages"), config));
        output.WriteLine(e.Message);
        Assert.Contains(Pretrained.PackageName, e.Message);
        Assert.Contains("127.0.0.1:9", e.Message);
        Assert.Contains("offline", e.Message);
        Assert.Contains(Pretrained.OnnxVariable, e.Message);
        Assert.False(File.Exists(Path.Combine(Pretrained.PackageDir(dir.File("packages")), "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx")));
    }

    static string WriteConfig(TempDir dir, string source)
    {
        string path = dir.File("NuGet.Config");
        File.WriteAllText(path, $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <packageSources>
                <clear />
                <add key="only" value="{source}" />
              </packageSources>
            </configuration>
            """);
        return path;
    }

    /// <summary>Reports on the calling thread (Progress&lt;T&gt; posts to the thread pool).</summary>
    sealed class SyncProgress(Action<ProgressUpdate> report) : IProgress<ProgressUpdate>
    {
        public void Report(ProgressUpdate value) { lock (this) report(value); }
    }
}
