using System.Runtime.InteropServices;

namespace InfluenceSharp.Native;

/// <summary>What a path names (regular file, device, pipe, ...), from Linux's statx, whose struct
/// layout is the same on every architecture. .NET's FileInfo does not tell a device from a file.</summary>
internal static class FileType
{
    private const int AT_FDCWD = -100;
    private const uint STATX_TYPE = 0x1, STATX_SIZE = 0x200;
    private const int S_IFMT = 0xF000, S_IFREG = 0x8000;

    [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte[] buffer);

    /// <summary>True/false when the path (symbolic links followed) is/is not a regular file, with its
    /// size; null where statx is not available (not Linux, or an old C library or kernel).</summary>
    public static bool? IsRegularFile(string path, out long size)
    {
        size = 0;
        if (!OperatingSystem.IsLinux()) return null;
        var buffer = new byte[256];   // sizeof(struct statx)
        try
        {
            if (Statx(AT_FDCWD, path, 0, STATX_TYPE | STATX_SIZE, buffer) != 0) return null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        int mode = BitConverter.ToUInt16(buffer, 0x1C);     // stx_mode
        size = BitConverter.ToInt64(buffer, 0x28);          // stx_size
        return (mode & S_IFMT) == S_IFREG;
    }
}
