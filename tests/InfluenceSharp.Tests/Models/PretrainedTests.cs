using InfluenceSharp.Models;
using InfluenceSharp.Training;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Models;

public class PretrainedTests(ITestOutputHelper output)
{
    /// <summary>The converted ImageNet ResNet-18, built with CNTK's asymmetric padding, computes the
    /// same 512 pooled features as the original ONNX model run by ONNX Runtime (the oracle), to
    /// float32 tolerance, on random BGR inputs in the 0–255 range. This checks the architecture (blocks,
    /// residuals, shortcuts, eval-mode BatchNorm) and the name mapping of every tensor.</summary>
    [Fact]
    public void ConvertedWeightsReproduceTheOnnxModel()
    {
        // The test project downloads the package (PackageDownload), so it is normally there.
        if (Pretrained.FindImageNetResNet18Onnx() is not { } onnx)
        {
            output.WriteLine($"SKIPPED: {Pretrained.PackageId} {Pretrained.PackageVersion} is not in the NuGet packages folder");
            return;
        }
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        string path = Pretrained.ImageNetResNet18(dir.Path, onnx);
        Assert.StartsWith(Path.Combine(dir.Path, "resnet18-imagenet-"), path);
        Assert.Equal(path, Pretrained.ImageNetResNet18(dir.Path, onnx));           // cached: same file, not redone
        // The exact CNTK network (three blocks in layer4, asymmetric padding) with every converted tensor.
        string full = dir.File("full.safetensors");
        InfluenceSharp.Storage.SafeTensors.Save(full, Pretrained.ConvertResNet18Onnx(onnx), new Dictionary<string, string>());
        var model = new ResNet18(3, 5, cntkVariant: true);
        var init = InitWeights.Apply(model, full);
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, init.Skipped);           // the backbone has no classifier
        model.eval();

        using var session = new InferenceSession(onnx);
        string input = session.InputMetadata.Keys.Single(), outName = session.OutputMetadata.Keys.Single();
        torch.manual_seed(TestSeed.For());
        for (int i = 0; i < 2; i++)
        {
            var bgr = (torch.rand(1, 3, 224, 224) * 255 - 120).contiguous();
            var data = bgr.data<float>().ToArray();
            using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(input, new DenseTensor<float>(data, new[] { 1, 3, 224, 224 })) });
            var expected = torch.tensor(results.Single(r => r.Name == outName).AsEnumerable<float>().ToArray());
            Assert.Equal(512, expected.shape[0]);
            torch.Tensor ours;
            using (no_grad()) ours = model.Features(bgr.flip(1)).flatten();     // the converted conv1 takes RGB
            double err = ((ours - expected).abs().max() / expected.abs().max()).item<float>();
            Assert.True(err < 1e-4, $"image {i}: max relative difference {err}");
        }
        // The cached torchvision-layout weights (without layer4.2) load into the plain resnet18, whose
        // features are close to, not equal to, the CNTK network's.
        var plain = new ResNet18(3, 5);
        Assert.Equal(new[] { "fc.weight", "fc.bias" }, InitWeights.Apply(plain, path).Skipped);
        plain.eval();
        using (no_grad())
        {
            var x = torch.rand(2, 3, 224, 224) * 255 - 120;
            var a = plain.Features(x); var b = model.Features(x);
            double cos = nn.functional.cosine_similarity(a, b, 1).min().item<float>();
            output.WriteLine($"cosine similarity of torchvision-layout and CNTK features: {cos:F3}");
            Assert.False(a.allclose(b, rtol: 1e-3, atol: 1e-3));
        }
        // Grey: conv1 summed over RGB is the RGB network fed the grey image in every channel.
        string greyPath = Pretrained.ImageNetResNet18(dir.Path, onnx, inChannels: 1);
        Assert.NotEqual(path, greyPath);
        var grey = new ResNet18(1, 5);
        InitWeights.Apply(grey, greyPath);
        grey.eval();
        using (no_grad())
        {
            var x = torch.rand(1, 1, 64, 64) * 255 - 120;
            var a = grey.Features(x); var b = plain.Features(x.expand(1, 3, 64, 64));
            double err = ((a - b).abs().max() / b.abs().max()).item<float>();
            Assert.True(err < 1e-4, $"grey vs RGB: {err}");
        }
    }
}
