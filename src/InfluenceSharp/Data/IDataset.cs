using static TorchSharp.torch;

namespace InfluenceSharp.Data;

/// <summary>What attribution methods need from a data set: batches of inputs and targets by index,
/// and a fingerprint that identifies the data in manifests.</summary>
public interface IDataset
{
    int Count { get; }
    Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null);
    Tensor Targets(ReadOnlySpan<int> indices, Device? device = null);
    string Fingerprint();
}

/// <summary>A data set held as two tensors (inputs [N, ...], targets [N]); any dtype. (Named so that it
/// does not collide with TorchSharp.Modules.TensorDataset when both namespaces are imported.)</summary>
public sealed class TensorPairDataset : IDataset
{
    public TensorPairDataset(Tensor inputs, Tensor targets)
    {
        if (inputs.shape[0] != targets.shape[0])
            throw new ArgumentException($"inputs have {inputs.shape[0]} rows but targets {targets.shape[0]}");
        X = inputs; Y = targets;
    }

    public Tensor X { get; }
    public Tensor Y { get; }
    public int Count => (int)X.shape[0];

    public Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null) => Select(X, indices, device);
    public Tensor Targets(ReadOnlySpan<int> indices, Device? device = null) => Select(Y, indices, device);

    static Tensor Select(Tensor t, ReadOnlySpan<int> indices, Device? device)
    {
        var idx = torch.tensor(indices.ToArray().Select(i => (long)i).ToArray());
        var r = t.index_select(0, idx.to(t.device));
        return device is null ? r : r.to(device);
    }

    public string Fingerprint()
    {
        using var h = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var t in new[] { X, Y })
        {
            using var c = t.detach().cpu().contiguous();
            h.AppendData(c.bytes);
            foreach (var d in t.shape) h.AppendData(BitConverter.GetBytes(d));
        }
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }
}
