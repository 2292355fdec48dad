using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Gradients;

public class Im2ColTests
{
    /// <summary>Independent reference: libtorch's unfold ([B, C·kh·kw, T]) transposed, plus the bias column.</summary>
    static Tensor Reference(Tensor x, Conv2d c, bool bias)
    {
        var cols = functional.unfold(x, (c.kernel_size[0], c.kernel_size[1]), (c.dilation[0], c.dilation[1]),
            (c.padding![0], c.padding[1]), (c.stride[0], c.stride[1])).transpose(1, 2);
        return bias ? torch.cat(new[] { cols, torch.ones(cols.shape[0], cols.shape[1], 1, dtype: x.dtype) }, 2) : cols;
    }

    static Tensor ChannelsLast(Tensor x) => x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);

    public static TheoryData<int, int, int, int, int, bool> Geometries => new()
    {
        // channels, kernel, stride, padding, dilation, bias
        { 1, 3, 1, 1, 1, true },
        { 3, 3, 2, 1, 1, true },
        { 2, 5, 1, 2, 1, false },
        { 4, 3, 1, 2, 2, false },
        { 3, 2, 2, 0, 1, true },
        { 2, 3, 3, 0, 2, true },
        // the float32 vector path (kernel rows of ≤ 8 elements copied 8 at a time): a 1×1 kernel on one
        // channel (each patch 1 element, so a copy's tail spans several patches), the widest rows, and
        // a row too wide for it
        { 1, 1, 1, 0, 1, false },
        { 2, 7, 1, 3, 1, true },
        { 1, 8, 2, 3, 1, false },
        { 3, 9, 1, 4, 1, true },
    };

    [Theory]
    [MemberData(nameof(Geometries))]
    public void PatchesEqualUnfoldForEveryLayoutAndDtype(int channels, int kernel, int stride, int padding, int dilation, bool bias)
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(40 + channels + kernel);
        var conv = Conv2d(channels, 5, kernel, stride: stride, padding: padding, dilation: dilation, bias: bias);
        var layer = TrackedLayer.Find(Sequential(("conv", conv))).Single();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
        {
            // 37 examples: several threads write neighbouring examples at once
            var x = torch.randn(new long[] { 37, channels, 11, 9 }, dtype: dtype);
            var expected = Reference(x, conv, bias);
            foreach (var input in new[] { x, ChannelsLast(x), x.narrow(0, 1, 2) })
            {
                var want = input.shape[0] == x.shape[0] ? expected : expected.narrow(0, 1, 2);
                Assert.True(layer.Activations(input).allclose(want, 0, 0), $"{dtype} strides {string.Join(",", input.stride())}");
                Assert.True(layer.PatchesByView(input, conv).allclose(want, 0, 0), $"view path, {dtype}");
            }
        }
    }

    /// <summary>Non-square kernels, uneven strides and a row dilation on the float32 vector path
    /// (kernel rows of ≤ 8 contiguous elements), against unfold.</summary>
    [Fact]
    public void UnevenGeometriesOnTheVectorPathEqualUnfold()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        foreach (var (k, s, p, d) in new[] { ((3L, 5L), (1L, 2L), (1L, 2L), (2L, 1L)), ((5L, 2L), (2L, 1L), (0L, 1L), (1L, 1L)), ((1L, 7L), (1L, 1L), (0L, 3L), (3L, 1L)) })
        {
            var conv = Conv2d(3, 4, k, stride: s, padding: p, dilation: d);
            var layer = TrackedLayer.Find(Sequential(("conv", conv))).Single();
            var x = torch.randn(new long[] { 29, 3, 13, 11 });
            var want = Reference(x, conv, true);
            Assert.True(layer.Activations(x).allclose(want, 0, 0), $"kernel {k} stride {s} padding {p} dilation {d}");
            Assert.True(layer.Activations(ChannelsLast(x)).allclose(want, 0, 0), $"channels-last, kernel {k}");
        }
    }

    [Fact]
    public void ReusedPatchBufferGivesEachRunItsOwnBatch()
    {
        using var scope = NewDisposeScope();
        torch.manual_seed(7);
        var model = new Methods.ConvNet().to(ScalarType.Float64);
        var layers = TrackedLayer.Find(model);
        var xs = new[] { torch.randn(new long[] { 6, 2, 8, 8 }, dtype: ScalarType.Float64), torch.randn(new long[] { 4, 2, 8, 8 }, dtype: ScalarType.Float64) };
        using var shared = new GradientCapture(model, layers);
        foreach (var x in xs)
        {
            var (_, reused) = shared.Run(model, x, l => l.logsumexp(1).sum());
            using var fresh = new GradientCapture(model, layers);
            var (_, own) = fresh.Run(model, x, l => l.logsumexp(1).sum());
            for (int i = 0; i < layers.Count; i++)
                Assert.True(reused[i].PerExample().allclose(own[i].PerExample(), 0, 0), layers[i].Name);
        }
    }

    [Fact]
    public void WorkspaceReusesItsBufferUntilItIsTooSmall()
    {
        using var scope = NewDisposeScope();
        using var ws = new Workspace();
        var first = ws.Take(new long[] { 4, 6, 5 }, ScalarType.Float32, CPU);
        var smaller = ws.Take(new long[] { 3, 6, 5 }, ScalarType.Float32, CPU);
        Assert.Equal(Im2Col.DataPointer(first), Im2Col.DataPointer(smaller));
        Assert.Equal(new long[] { 3, 6, 5 }, smaller.shape);
        var larger = ws.Take(new long[] { 8, 6, 5 }, ScalarType.Float32, CPU);
        Assert.NotEqual(Im2Col.DataPointer(first), Im2Col.DataPointer(larger));
        var other = ws.Take(new long[] { 2, 6, 5 }, ScalarType.Float64, CPU);
        Assert.Equal(ScalarType.Float64, other.dtype);
    }
}
