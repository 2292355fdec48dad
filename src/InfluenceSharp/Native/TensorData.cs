using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace InfluenceSharp.Native;

/// <summary>Raw access to a tensor's memory for the loops written here (im2col, projection rows):
/// the data pointer, storage offset included, exported by TorchSharp's own native library. The caller
/// keeps the tensor alive (and contiguous where it assumes so) while it uses the pointer.</summary>
internal static class TensorData
{
    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);

    public static IntPtr Pointer(Tensor t) => THSTensor_data(t.Handle);
}
