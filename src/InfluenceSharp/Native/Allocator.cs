using System.Runtime.InteropServices;

namespace InfluenceSharp.Native;

/// <summary>
/// Process-wide setting for glibc's malloc, which libtorch's CPU allocator uses. By default glibc maps
/// blocks of a few MiB and more straight from the OS, unmaps them on free and trims the heap top: every
/// batch then page-faults its activations in anew, which on a 2-core machine cost more than the
/// arithmetic (a 512×16×28×28 conv forward: 27 ms, of which 24 ms page faults). Applications (the
/// CLI, the bench) call this once at startup; a library never changes it behind its host's back.
/// </summary>
public static class Allocator
{
    private const int M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3;

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int param, int value);

    /// <summary>Serves blocks up to 32 MiB from the heap and keeps up to 1 GiB of freed heap instead of
    /// returning it. Larger blocks still come from mmap (the one that recurs in every batch, conv
    /// patches, is a buffer the gradient capture reuses). Returns false where this is not glibc.</summary>
    public static bool KeepFreedMemory()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try { return MallOpt(M_MMAP_THRESHOLD, 32 << 20) == 1 && MallOpt(M_TRIM_THRESHOLD, 1 << 30) == 1; }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return false; }
    }
}
