using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>
/// im2col for CPU tensors written as a plain loop over libtorch's memory: one sequential pass over
/// the output rows, reading each input example from cache. libtorch has no fused kernel for the
/// [B, T, C·kh·kw (+1)] layout: a strided copy from an unfold view runs with an inner loop of kw
/// elements and was 5× slower (60 ms against 12 ms for a SmallCnn conv2 batch of 512), the largest
/// single cost of the EK-FAC passes on CPU. Other devices use the libtorch view copy.
/// </summary>
internal static unsafe class Im2Col
{
    // The tensor's data pointer (storage offset included), exported by TorchSharp's own native library.
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    public static bool Supports(Tensor input) =>
        input.device_type == DeviceType.CPU && input.dtype is ScalarType.Float32 or ScalarType.Float64 && input.dim() == 4;

    /// <summary>Patches [B, OH·OW, C·kh·kw (+1 column of ones when bias)] with the feature order of
    /// weight.reshape(Out, -1): channel, then kernel row, then kernel column. Any input strides
    /// (NCHW or channels-last) are read as they are.</summary>
    /// <param name="workspace">Optional buffer reused across batches: when it is large enough the patches
    /// are a view of it (fresh allocations above glibc's 32 MiB mmap threshold are page-faulted in anew
    /// on every batch, which cost more than the copy itself).</param>
    public static Tensor Patches(Tensor input, long[] kernel, long[] stride, long[] padding, long[] dilation, bool bias, Workspace? workspace = null)
    {
        long b = input.shape[0], c = input.shape[1], h = input.shape[2], w = input.shape[3];
        long oh = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) / stride[0] + 1;
        long ow = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) / stride[1] + 1;
        long features = c * kernel[0] * kernel[1] + (bias ? 1 : 0);
        var shape = new[] { b, oh * ow, features };
        var result = workspace is null ? empty(shape, dtype: input.dtype, device: input.device) : workspace.Take(shape, input.dtype, input.device);
        var g = new Geometry(input.stride(), c, h, w, oh, ow, kernel, stride, padding, dilation, features, bias);
        IntPtr src = THSTensor_data(input.Handle), dst = THSTensor_data(result.Handle);
        if (input.dtype == ScalarType.Float32) Run<float>(src, dst, b, g, 1f);
        else Run<double>(src, dst, b, g, 1d);
        GC.KeepAlive(input);
        return result;
    }

    private sealed record Geometry(long[] InStride, long C, long H, long W, long OH, long OW,
        long[] K, long[] S, long[] P, long[] D, long Features, bool Bias);

    private static void Run<T>(IntPtr src, IntPtr dst, long batch, Geometry g, T one) where T : unmanaged
    {
        long perExample = g.OH * g.OW * g.Features;
        Parallel.For(0L, batch, e => Example((T*)src + e * g.InStride[0], (T*)dst + e * perExample, g, one));
    }

    private static void Example<T>(T* s, T* d, Geometry g, T one) where T : unmanaged
    {
        long sc = g.InStride[1], sh = g.InStride[2], sw = g.InStride[3];
        long c = g.C, h = g.H, w = g.W, oh = g.OH, ow = g.OW, kh = g.K[0], kw = g.K[1];
        long strideY = g.S[0], strideX = g.S[1], padY = g.P[0], padX = g.P[1];
        long stepY = g.D[0] * sh, stepX = g.D[1] * sw, dilY = g.D[0], dilX = g.D[1];
        bool bias = g.Bias;
        for (long y = 0; y < oh; y++)
        {
            long y0 = y * strideY - padY;
            bool rowsIn = y0 >= 0 && y0 + dilY * (kh - 1) < h;
            for (long x = 0; x < ow; x++)
            {
                long x0 = x * strideX - padX;
                if (rowsIn && x0 >= 0 && x0 + dilX * (kw - 1) < w)
                {
                    // Interior: the whole window is inside the image.
                    T* corner = s + y0 * sh + x0 * sw;
                    for (long ch = 0; ch < c; ch++, corner += sc)
                    {
                        T* row = corner;
                        for (long ky = 0; ky < kh; ky++, row += stepY)
                        {
                            T* p = row;
                            for (long kx = 0; kx < kw; kx++, p += stepX) *d++ = *p;
                        }
                    }
                }
                else
                {
                    for (long ch = 0; ch < c; ch++)
                        for (long ky = 0; ky < kh; ky++)
                        {
                            long iy = y0 + ky * dilY;
                            bool rowIn = iy >= 0 && iy < h;
                            for (long kx = 0; kx < kw; kx++)
                            {
                                long ix = x0 + kx * dilX;
                                *d++ = rowIn && ix >= 0 && ix < w ? s[ch * sc + iy * sh + ix * sw] : default;
                            }
                        }
                }
                if (bias) *d++ = one;
            }
        }
    }
}

/// <summary>A buffer that a repeated computation writes into instead of allocating anew each time.
/// Whatever was taken from it is overwritten by the next Take.</summary>
internal sealed class Workspace : IDisposable
{
    private Tensor? buffer;

    public Tensor Take(long[] shape, ScalarType dtype, Device device)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (buffer is null || buffer.dtype != dtype || buffer.device != device || buffer.numel() < n)
        {
            buffer?.Dispose();
            buffer = empty(n, dtype: dtype, device: device).DetachFromDisposeScope();
        }
        return buffer.narrow(0, 0, n).view(shape);
    }

    public void Dispose() { buffer?.Dispose(); buffer = null; }
}
