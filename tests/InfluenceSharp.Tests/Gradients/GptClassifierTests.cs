using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Tests.Methods;
using InfluenceSharp.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Gradients;

/// <summary>
/// The GPT text classifier on a tiny float64 model: padding is masked (each example's logits and
/// per-example gradients equal those of the example alone, without its padding, by an autograd loop
/// of an explicitly written cross-entropy), and every projection is captured.
/// </summary>
public class GptClassifierTests
{
    const int Vocab = 9, Context = 6, N = 6, Classes = 3;   // the last id (8) is padding
    static readonly int[] Lengths = { 6, 3, 1, 4, 5, 2 };

    static (GptClassifier Model, TensorPairDataset Data) Problem(int seed)
    {
        torch.manual_seed(seed);
        var model = new GptClassifier(new GptOptions(Vocab, Context, Embedding: 8, Layers: 2, Heads: 2), Classes);
        model.to(ScalarType.Float64);
        using (no_grad())
            foreach (var p in model.parameters()) p.add_(torch.randn_like(p) * 0.3);   // away from the tiny init
        var x = torch.randint(0, Vocab - 1, new long[] { N, Context });
        for (int i = 0; i < N; i++) if (Lengths[i] < Context) x[i, Lengths[i]..] = torch.tensor((long)(Vocab - 1));
        var y = torch.randint(0, Classes, new long[] { N });
        return (model, new TensorPairDataset(x, y));
    }

    /// <summary>−log softmax(logits)[label], written out.</summary>
    static Tensor ExplicitLoss(Tensor logits, Tensor label) =>
        nn.functional.log_softmax(logits, -1).gather(1, label.unsqueeze(1)).sum().neg();

    static Tensor Flat(TrackedLayer l)
    {
        if (l.Module is Embedding e) return e.weight!.grad!.t().flatten().clone();
        var lin = (Linear)l.Module;
        var w = lin.weight!.grad!;
        return (lin.bias is null ? w : torch.cat(new[] { w, lin.bias.grad!.unsqueeze(1) }, 1)).flatten().clone();
    }

    [Fact]
    public void PaddingIsMaskedAndPerExampleGradientsEqualAnAutogradLoopOverUnpaddedExamples()
    {
        var (model, data) = Problem(5101);
        var layers = TrackedLayer.Find(model);
        Assert.Equal(new[] { "wte", "wpe", "h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj",
            "h.1.attn.c_attn", "h.1.attn.c_proj", "h.1.mlp.c_fc", "h.1.mlp.c_proj", "head" }, layers.Select(l => l.Name));
        Assert.Equal("head", ModelSpec.HeadOf(model));
        // The oracle: each example alone with only its real tokens (no padding at all).
        var logits = new List<Tensor>();
        var rows = new List<Tensor>();
        for (int i = 0; i < N; i++)
        {
            model.zero_grad();
            var xi = data.X.narrow(0, i, 1).narrow(1, 0, Lengths[i]);
            var li = model.forward(xi);
            logits.Add(li.detach().clone());
            ExplicitLoss(li, data.Y.narrow(0, i, 1)).backward();
            rows.Add(torch.cat(layers.Select(Flat).ToArray()));
        }
        var idx = Enumerable.Range(0, N).ToArray();
        using (no_grad())
        {
            var batch = model.forward(data.Inputs(idx));
            double lerr = (batch - torch.cat(logits.ToArray())).abs().max().item<double>();
            Assert.True(lerr < 1e-12, $"padded logits differ from unpadded ones by {lerr}");
        }
        var expected = torch.stack(rows);
        using var capture = new GradientCapture(model, layers);
        var task = new ClassificationTask();
        var y = data.Targets(idx);
        var (_, lbs) = capture.Run(model, data.Inputs(idx), l => task.TrainLoss(l, y));
        var got = torch.cat(lbs.Select(lb => lb.PerExample().reshape(N, -1)).ToArray(), 1);
        Oracles.AssertLayersClose(expected, got, layers, 1e-10);
        // The padding id's embedding row gets no gradient.
        var wte = expected.narrow(1, 0, layers[0].NumParams).reshape(N, layers[0].Out, layers[0].In);
        Assert.Equal(0.0, wte[.., .., Vocab - 1].abs().max().item<double>());
    }

    [Fact]
    public void SpecBuildsTheClassifierAndRefusesAMissingVocabulary()
    {
        var spec = ModelSpec.ForTextClasses(258, 16, 4, new[] { 8, 1, 2 });
        spec.Validate("test");
        torch.manual_seed(5102);
        var m = Assert.IsType<GptClassifier>(spec.Create());
        Assert.Equal((258, 16, 4), (m.Options.Vocabulary, m.Options.Context, m.Classes));
        var json = InfluenceSharp.Formats.Json.Serialize(spec);
        Assert.Contains("\"vocabulary\": 258", json);
        var back = System.Text.Json.JsonSerializer.Deserialize<ModelSpec>(json, InfluenceSharp.Formats.Json.Options)!;
        Assert.Equal(258, back.Vocabulary);
        var e = Assert.Throws<InfluenceSharpException>(() => (spec with { Vocabulary = null }).Validate("side.json"));
        Assert.Contains("vocabulary", e.Message);
    }
}
