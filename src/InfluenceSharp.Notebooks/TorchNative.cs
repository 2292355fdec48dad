using System.Runtime.InteropServices;
using System.Text;

namespace InfluenceSharp.Notebooks;

/// <summary>
/// Makes TorchSharp-cpu's native library loadable in a notebook on systems whose libstdc++ lacks
/// GLIBCXX_3.4.32 (Debian 12). An application's build patches its own copy (the InfluenceSharp
/// package's build targets); a notebook has no build, so here a patched copy of libLibTorchSharp.so
/// (that one version need marked weak; no relocation uses it) is written to a per-user cache and
/// loaded, after the libtorch libraries it needs, before TorchSharp looks for it (TorchSharp then
/// finds it loaded). The NuGet cache is never changed. Nothing happens where libstdc++ has the
/// version, off Linux x64, or when TorchSharp's packages are not found.
/// </summary>
public static class TorchNative
{
    const string Needed = "GLIBCXX_3.4.32";
    static int done;

    /// <summary>What <see cref="Prepare"/> did, for the notebook to show (null until it ran).</summary>
    public static string? Status { get; private set; }

    /// <summary>Loads a patched libLibTorchSharp.so when this system needs one (idempotent).</summary>
    public static string Prepare()
    {
        if (Interlocked.Exchange(ref done, 1) == 1) return Status ?? "";
        try { Status = PrepareCore(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DllNotFoundException or BadImageFormatException)
        {
            Status = "TorchSharp native preload failed: " + e.Message;
        }
        return Status;
    }

    static string PrepareCore()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux) || RuntimeInformation.ProcessArchitecture != Architecture.X64) return "not Linux x64: nothing to do";
        string? libstdcxx = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6" }
            .FirstOrDefault(File.Exists);
        if (libstdcxx is null || Encoding.ASCII.GetString(File.ReadAllBytes(libstdcxx)).Contains(Needed + "\0", StringComparison.Ordinal))
            return "libstdc++ provides " + Needed + ": nothing to do";
        // TorchSharp.dll lies in PACKAGES/torchsharp/VERSION/lib/TFM/.
        string torchSharpDll = typeof(TorchSharp.torch).Assembly.Location;
        var pkg = Directory.GetParent(torchSharpDll)?.Parent?.Parent;
        string? packages = pkg?.Parent?.Parent?.FullName;
        string original = pkg is null ? "" : Path.Combine(pkg.FullName, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (packages is null || !File.Exists(original)) return "TorchSharp's native library not found beside " + torchSharpDll;
        string? libtorch = Directory.Exists(Path.Combine(packages, "libtorch-cpu-linux-x64"))
            ? Directory.GetDirectories(Path.Combine(packages, "libtorch-cpu-linux-x64"))
                .Select(d => Path.Combine(d, "runtimes", "linux-x64", "native")).Where(d => File.Exists(Path.Combine(d, "libtorch.so")))
                .OrderByDescending(d => d, StringComparer.Ordinal).FirstOrDefault()
            : null;
        if (libtorch is null) return "libtorch-cpu-linux-x64 not found in " + packages + " (reference TorchSharp-cpu first)";

        byte[] b = File.ReadAllBytes(original);
        if (!Weaken(b)) return Needed + " not needed by " + original + ": nothing to do";
        string cache = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.Create),
            "influencesharp", "libtorchsharp-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(b))[..16]);
        Directory.CreateDirectory(cache);
        string patched = Path.Combine(cache, "libLibTorchSharp.so");
        if (!File.Exists(patched))
        {
            string tmp = patched + ".tmp-" + Guid.NewGuid().ToString("N");
            File.WriteAllBytes(tmp, b);
            File.Move(tmp, patched, overwrite: true);
        }
        foreach (var lib in new[] { "libc10.so", "libtorch_cpu.so", "libtorch.so" })
            if (File.Exists(Path.Combine(libtorch, lib))) NativeLibrary.Load(Path.Combine(libtorch, lib));
        NativeLibrary.Load(patched);
        return "loaded " + patched + " (" + Needed + " marked weak) with libtorch from " + libtorch;
    }

    /// <summary>Marks the <see cref="Needed"/> version need weak in an ELF64 image; false when absent.</summary>
    internal static bool Weaken(byte[] b)
    {
        if (b.Length < 64 || b[0] != 0x7f || b[1] != (byte)'E' || b[2] != (byte)'L' || b[3] != (byte)'F' || b[4] != 2 || b[5] != 1) return false;
        ushort U16(int o) => BitConverter.ToUInt16(b, o);
        uint U32(int o) => BitConverter.ToUInt32(b, o);
        ulong U64(int o) => BitConverter.ToUInt64(b, o);
        long shoff = (long)U64(0x28); int shentsize = U16(0x3A), shnum = U16(0x3C);
        bool found = false;
        for (int i = 0; i < shnum; i++)
        {
            int sh = (int)(shoff + (long)i * shentsize);
            if (U32(sh + 4) != 0x6ffffffe) continue;            // SHT_GNU_verneed
            int off = (int)U64(sh + 0x18); uint link = U32(sh + 0x28);
            int strOff = (int)U64((int)(shoff + (long)link * shentsize) + 0x18);
            for (int vn = off; ;)
            {
                int aux = vn + (int)U32(vn + 8), cnt = U16(vn + 2);
                for (int k = 0; k < cnt; k++)
                {
                    int nameOff = strOff + (int)U32(aux + 8), end = nameOff;
                    while (b[end] != 0) end++;
                    if (Encoding.ASCII.GetString(b, nameOff, end - nameOff) == Needed)
                    {
                        found = true;
                        BitConverter.GetBytes((ushort)(U16(aux + 4) | 0x2)).CopyTo(b, aux + 4);   // VER_FLG_WEAK
                    }
                    uint next = U32(aux + 12); if (next == 0) break; aux += (int)next;
                }
                uint vnNext = U32(vn + 12); if (vnNext == 0) break; vn += (int)vnNext;
            }
        }
        return found;
    }
}
