using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>A view of some rows of another data set (no copy).</summary>
public sealed class SubsetDataset : IDataset
{
    private readonly IDataset inner;
    private readonly int[] indices;

    public SubsetDataset(IDataset inner, int[] indices)
    {
        foreach (var i in indices)
            if (i < 0 || i >= inner.Count) throw new InfluenceSharpException($"index {i} is outside the data set (0..{inner.Count - 1})");
        this.inner = inner; this.indices = indices;
    }

    public static SubsetDataset Range(IDataset inner, int start, int count) => new(inner, Enumerable.Range(start, count).ToArray());

    public int Count => indices.Length;
    public IReadOnlyList<int> Indices => indices;
    /// <summary>The data set this is a view of.</summary>
    public IDataset Inner => inner;

    public Tensor Inputs(ReadOnlySpan<int> idx, Device? device = null) => inner.Inputs(Map(idx), device);
    public Tensor Targets(ReadOnlySpan<int> idx, Device? device = null) => inner.Targets(Map(idx), device);

    private int[] Map(ReadOnlySpan<int> idx)
    {
        var r = new int[idx.Length];
        for (int i = 0; i < r.Length; i++) r[i] = indices[idx[i]];
        return r;
    }

    public string Fingerprint()
    {
        var bytes = new byte[indices.Length * 4];
        Buffer.BlockCopy(indices, 0, bytes, 0, bytes.Length);
        var h = System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(inner.Fingerprint()).Concat(bytes).ToArray());
        return Convert.ToHexStringLower(h)[..32];
    }
}
