using InfluenceSharp.Data;

// Model initialisation draws from libtorch's global generator (modules take no generator), so a test
// that seeds it and builds a model must not interleave with another test doing the same.
[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace InfluenceSharp.Tests;

/// <summary>A fresh temporary directory per test, deleted afterwards.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() { Directory.CreateDirectory(Path); }
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "influencesharp-tests", Guid.NewGuid().ToString("N"));
    public string File(string name) => System.IO.Path.Combine(Path, name);
    public void Dispose() { try { Directory.Delete(Path, true); } catch (IOException) { } }
}

/// <summary>The embedded data, loaded once for all tests.</summary>
public static class Embedded
{
    private static readonly Lazy<DataSplit> split = new(DataSource.LoadEmbedded);
    public static DataSplit Split => split.Value;
}

public static class TensorAssert
{
    /// <summary>True when both tensors have the same shape, dtype and bit-identical values.</summary>
    public static bool BitEqual(TorchSharp.torch.Tensor a, TorchSharp.torch.Tensor b) =>
        a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype &&
        a.detach().cpu().contiguous().bytes.SequenceEqual(b.detach().cpu().contiguous().bytes);
}
