using System.Security.Cryptography;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

public static class ModelFingerprint
{
    /// <summary>Hash of a model's state (names, shapes, values): identifies "the same checkpoint" in
    /// manifests, whether the model came from a file or from memory.</summary>
    public static string Of(nn.Module model)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var (name, t) in model.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            h.AppendData(System.Text.Encoding.UTF8.GetBytes(name));
            foreach (var d in t.shape) h.AppendData(BitConverter.GetBytes(d));
            using var c = t.detach().cpu().contiguous();
            if (c.numel() > 0) h.AppendData(c.bytes);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset())[..32];
    }
}
