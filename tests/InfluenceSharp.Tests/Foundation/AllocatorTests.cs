using InfluenceSharp.Native;

namespace InfluenceSharp.Tests.Foundation;

public class AllocatorTests
{
    /// <summary>The CLI and the bench rely on this setting for their speed on Linux. What a test can
    /// check is that the P/Invoke reaches glibc's mallopt (it returns false when the library or entry
    /// point does not resolve); glibc 2.36 answers 1 to any value, so the effect is measured in bench/.</summary>
    [Fact]
    public void KeepFreedMemoryReachesGlibc()
    {
        if (!OperatingSystem.IsLinux()) { Assert.False(Allocator.KeepFreedMemory()); return; }
        Assert.True(Allocator.KeepFreedMemory());
    }
}
