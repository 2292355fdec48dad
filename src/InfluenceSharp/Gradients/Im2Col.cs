using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using static TorchSharp.torch;

namespace InfluenceSharp.Gradients;

/// <summary>
/// im2col for CPU tensors written as a plain loop over libtorch's memory: one sequential pass over
/// the output rows, reading each input example from cache. libtorch has no fused kernel for the
/// [B, T, C·kh·kw (+1)] layout: a strided copy from an unfold view runs with an inner loop of kw
/// elements and was 12× slower (60 ms against 5 ms for a SmallCnn conv2 batch of 512), the largest
/// single cost of the EK-FAC passes on CPU. Other devices use the libtorch view copy.
/// </summary>
internal static unsafe class Im2Col
{
    internal static IntPtr DataPointer(Tensor t) => Native.TensorData.Pointer(t);

    public static bool Supports(Tensor input) =>
        input.device_type == DeviceType.CPU && input.dtype is ScalarType.Float32 or ScalarType.Float64 && input.dim() == 4;

    /// <summary>Patches [B, OH·OW, C·kh·kw (+1 column of ones when bias)] with the feature order of
    /// weight.reshape(Out, -1): channel, then kernel row, then kernel column. Any input strides
    /// (NCHW or channels-last) are read as they are.</summary>
    /// <param name="input">Input [B, C, H, W], float32 or float64 on the CPU.</param>
    /// <param name="kernel">Kernel height and width.</param>
    /// <param name="stride">Stride per spatial dimension.</param>
    /// <param name="padding">Zero padding per spatial dimension.</param>
    /// <param name="dilation">Dilation per spatial dimension.</param>
    /// <param name="bias">Append a column of ones (the bias's input).</param>
    /// <param name="workspace">Optional buffer reused across batches: when it is large enough the patches
    /// are a view of it (fresh allocations above glibc's mmap threshold, 32 MiB with Native.Allocator,
    /// are page-faulted in anew on every batch, which cost more than the copy itself).</param>
    public static Tensor Patches(Tensor input, long[] kernel, long[] stride, long[] padding, long[] dilation, bool bias, Workspace? workspace = null)
    {
        long b = input.shape[0], c = input.shape[1], h = input.shape[2], w = input.shape[3];
        long oh = (h + 2 * padding[0] - dilation[0] * (kernel[0] - 1) - 1) / stride[0] + 1;
        long ow = (w + 2 * padding[1] - dilation[1] * (kernel[1] - 1) - 1) / stride[1] + 1;
        long features = c * kernel[0] * kernel[1] + (bias ? 1 : 0);
        var shape = new[] { b, oh * ow, features };
        var result = workspace is null ? empty(shape, dtype: input.dtype, device: input.device) : workspace.Take(shape, input.dtype, input.device);
        var g = new Geometry(input.stride(), c, h, w, oh, ow, kernel, stride, padding, dilation, features, bias);
        IntPtr src = DataPointer(input), dst = DataPointer(result);
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
        long hp = g.H + 2 * g.P[0], wp = g.W + 2 * g.P[1];
        // Each worker copies one example at a time into a zero-padded contiguous [C, H+2p, W+2p]
        // scratch (small, stays in cache), so the patch loop has no bounds tests and fixed strides.
        bool wide = typeof(T) == typeof(float) && g.D[1] == 1 && g.K[1] <= 8 && Vector256.IsHardwareAccelerated;
        Parallel.For(0L, batch,
            // 8 elements of slack: the vector copies of a kernel row read up to 8 elements from its start.
            () => (IntPtr)NativeMemory.AllocZeroed((nuint)(g.C * hp * wp + 8), (nuint)sizeof(T)),
            (e, _, scratch) =>
            {
                Pad((T*)src + e * g.InStride[0], (T*)scratch, g, hp, wp);
                if (wide) ExampleFloat8((float*)scratch, (float*)dst + e * perExample, g, hp, wp);
                else Example((T*)scratch, (T*)dst + e * perExample, g, hp, wp, one);
                return scratch;
            },
            scratch => NativeMemory.Free((void*)scratch));
    }

    /// <summary>Copies one example (any strides) into the interior of the padded scratch; the border
    /// stays zero from the allocation.</summary>
    private static void Pad<T>(T* s, T* pad, Geometry g, long hp, long wp) where T : unmanaged
    {
        long sc = g.InStride[1], sh = g.InStride[2], sw = g.InStride[3];
        long c = g.C, h = g.H, w = g.W, py = g.P[0], px = g.P[1];
        for (long ch = 0; ch < c; ch++)
            for (long y = 0; y < h; y++)
            {
                T* from = s + ch * sc + y * sh;
                T* to = pad + (ch * hp + y + py) * wp + px;
                if (sw == 1) new ReadOnlySpan<T>(from, (int)w).CopyTo(new Span<T>(to, (int)w));
                else for (long x = 0; x < w; x++) to[x] = from[x * sw];
            }
    }

    /// <summary><see cref="Example"/> for float32 with kernel rows of at most 8 contiguous elements
    /// (column dilation 1): each kernel row is one 8-wide vector load and store. A store runs past the
    /// row's kw elements into the next ones, which the following stores overwrite in order; within 8
    /// elements of the example's end the copy goes element by element, since the tail would reach the
    /// next example, which another thread may be writing.</summary>
    private static void ExampleFloat8(float* pad, float* d, Geometry g, long hp, long wp)
    {
        long c = g.C, oh = g.OH, ow = g.OW, kh = g.K[0], kw = g.K[1];
        long stepRow = g.S[0] * wp, stepCol = g.S[1], dilRow = g.D[0] * wp, plane = hp * wp;
        bool bias = g.Bias;
        float* end = d + oh * ow * g.Features;
        for (long y = 0; y < oh; y++)
            for (long x = 0; x < ow; x++)
            {
                float* corner = pad + y * stepRow + x * stepCol;
                for (long ch = 0; ch < c; ch++, corner += plane)
                {
                    float* row = corner;
                    for (long ky = 0; ky < kh; ky++, row += dilRow)
                    {
                        if (d + 8 <= end) Vector256.Store(Vector256.Load(row), d);
                        else for (long kx = 0; kx < kw; kx++) d[kx] = row[kx];
                        d += kw;
                    }
                }
                if (bias) *d++ = 1f;
            }
    }

    private static void Example<T>(T* pad, T* d, Geometry g, long hp, long wp, T one) where T : unmanaged
    {
        long c = g.C, oh = g.OH, ow = g.OW, kh = g.K[0], kw = g.K[1];
        long stepRow = g.S[0] * wp, stepCol = g.S[1], dilRow = g.D[0] * wp, dilCol = g.D[1], plane = hp * wp;
        bool bias = g.Bias;
        for (long y = 0; y < oh; y++)
            for (long x = 0; x < ow; x++)
            {
                T* corner = pad + y * stepRow + x * stepCol;
                for (long ch = 0; ch < c; ch++, corner += plane)
                {
                    T* row = corner;
                    for (long ky = 0; ky < kh; ky++, row += dilRow)
                    {
                        T* p = row;
                        for (long kx = 0; kx < kw; kx++, p += dilCol) *d++ = *p;
                    }
                }
                if (bias) *d++ = one;
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
        if (buffer is null || buffer.dtype != dtype || buffer.device_type != device.type || buffer.device_index != device.index || buffer.numel() < n)
        {
            buffer?.Dispose();
            buffer = empty(n, dtype: dtype, device: device).DetachFromDisposeScope();
        }
        return buffer.narrow(0, 0, n).view(shape);
    }

    public void Dispose() { buffer?.Dispose(); buffer = null; }
}
