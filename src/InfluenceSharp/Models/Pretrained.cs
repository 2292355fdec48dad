using System.Buffers.Binary;
using System.Text;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

/// <summary>
/// Pretrained weights that need no download. <see cref="ImageNetResNet18"/>: the ImageNet ResNet-18
/// that the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c> (0.23.1) ships as ONNX
/// (a CNTK export with generated tensor names), converted once to torchvision's layout and parameter
/// names and cached as safetensors.
/// </summary>
/// <remarks>
/// The CNTK network is not exactly torchvision's: its last stage has three blocks (layer4.0-2) and it
/// pads asymmetrically (stem convolution, max-pool and strided 3×3 convolutions). The cached
/// torchvision-layout weights leave out layer4.2 (a residual block, so the rest still composes; fine-tuning
/// adapts) and <see cref="ResNet18"/> pads symmetrically; built with <c>cntkVariant</c> it is the CNTK
/// network, and <see cref="ConvertResNet18Onnx"/>'s weights reproduce the ONNX model's features exactly.
/// The converted backbone has no classifier (the ONNX model ends at the pooled 512 features): <c>fc</c>
/// starts fresh. Its first convolution is re-ordered to take RGB (the original takes BGR). The original
/// expects pixels in 0–255 minus a per-pixel mean image (no division by a standard deviation).
/// </remarks>
public static class Pretrained
{
    public const string PackageId = "microsoft.ml.dnnimagefeaturizer.resnet18";
    public const string PackageVersion = "0.23.1";
    /// <summary>Set to an ONNX file to use instead of the one in the NuGet packages folder.</summary>
    public const string OnnxVariable = "INFLUENCESHARP_RESNET18_ONNX";
    /// <summary>Set to a directory to cache converted weights in (default: $XDG_CACHE_HOME or ~/.cache, /influencesharp).</summary>
    public const string CacheVariable = "INFLUENCESHARP_CACHE";

    /// <summary>The ONNX file in the NuGet global packages folder ($NUGET_PACKAGES or ~/.nuget/packages),
    /// or the file named by INFLUENCESHARP_RESNET18_ONNX; null when neither is there.</summary>
    public static string? FindImageNetResNet18Onnx()
    {
        if (Environment.GetEnvironmentVariable(OnnxVariable) is { Length: > 0 } env) return File.Exists(env) ? env : null;
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np ? np
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, PackageId, PackageVersion, "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");
        return File.Exists(path) ? path : null;
    }

    public static string DefaultCacheDir() =>
        Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } c ? c
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "influencesharp");

    /// <summary>The converted ImageNet ResNet-18 weights (safetensors, torchvision names, no <c>fc</c>),
    /// converting the ONNX file at first use and caching the result.</summary>
    /// <exception cref="InfluenceSharpException">The NuGet package is not in the packages folder.</exception>
    /// <param name="cacheDir">Where converted weights are cached [default: <see cref="DefaultCacheDir"/>].</param>
    /// <param name="onnxPath">The ONNX file [default: <see cref="FindImageNetResNet18Onnx"/>].</param>
    /// <param name="inChannels">3, or 1 for grey inputs: conv1's weights summed over RGB, which is exactly
    /// the RGB network fed the grey image in all three channels.</param>
    public static string ImageNetResNet18(string? cacheDir = null, string? onnxPath = null, int inChannels = 3)
    {
        if (inChannels != 1 && inChannels != 3)
            throw new InfluenceSharpException($"--pretrained imagenet: the inputs have {inChannels} channels; the ImageNet weights take 3 (RGB) or 1 (grey)");
        onnxPath ??= FindImageNetResNet18Onnx() ?? throw new InfluenceSharpException(
            $"--pretrained imagenet: the ImageNet ResNet-18 comes from the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 {PackageVersion}, " +
            $"which is not in the NuGet packages folder; restore it once (e.g. `dotnet add package Microsoft.ML.DnnImageFeaturizer.ResNet18 --version {PackageVersion}` in any project), or set {OnnxVariable} to its ResNet18.onnx");
        cacheDir ??= DefaultCacheDir();
        string hash = Training.Checkpoint.HashFile(onnxPath)[..16];
        string target = Path.Combine(cacheDir, $"resnet18-imagenet{(inChannels == 1 ? "-grey" : "")}-{hash}.safetensors");
        if (File.Exists(target)) return target;
        Directory.CreateDirectory(cacheDir);
        using var scope = NewDisposeScope();
        // torchvision's layout: without the extra last-stage block of the CNTK network.
        var state = ConvertResNet18Onnx(onnxPath).Where(kv => !kv.Key.StartsWith("layer4.2.", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        if (inChannels == 1) state["conv1.weight"] = state["conv1.weight"].sum(new long[] { 1 }, keepdim: true);
        SafeTensors.Save(target, state, new Dictionary<string, string>
        {
            ["format"] = "pt", ["architecture"] = "resnet18", ["source"] = $"{PackageId} {PackageVersion} ResNet18.onnx (sha256 {hash}...), without its extra block layer4.2",
        });
        return target;
    }

    /// <summary>Reads the CNTK ONNX ResNet-18 and returns its weights under torchvision's names
    /// (conv1 re-ordered from BGR to RGB), including its extra block layer4.2 (see
    /// <see cref="ResNet18(int, int, bool)"/>). The graph order gives the mapping: the Conv nodes with the
    /// BatchNormalization that reads each one's output, stem first, then the blocks of layer1..layer4
    /// (in a block with a shortcut, the 1×1 convolution is <c>downsample</c>).</summary>
    public static Dictionary<string, Tensor> ConvertResNet18Onnx(string onnxPath)
    {
        var graph = OnnxGraph.Read(onnxPath);
        var pairs = new List<(string Conv, string[] Bn)>();
        foreach (var node in graph.Nodes.Where(n => n.OpType == "Conv"))
        {
            var bn = graph.Nodes.FirstOrDefault(n => n.OpType == "BatchNormalization" && n.Inputs.Length >= 5 && n.Inputs[0] == node.Outputs[0])
                ?? throw new InfluenceSharpException($"{onnxPath}: Conv node '{node.Name}' is not followed by a BatchNormalization (not the expected ResNet-18)");
            pairs.Add((node.Inputs[1], bn.Inputs[1..5]));
        }
        // CNTK's "ResNet18" has three blocks in its last stage (22 convolutions, not torchvision's 20).
        if (pairs.Count != 22)
            throw new InfluenceSharpException($"{onnxPath}: {pairs.Count} Conv+BatchNormalization pairs; the CNTK ResNet-18 export has 22");
        var names = new List<string> { "" };   // the stem: conv1 / bn1
        for (int l = 1; l <= 4; l++)
            for (int b = 0; b < (l == 4 ? 3 : 2); b++)
            {
                var block = new List<string> { $"layer{l}.{b}.conv1", $"layer{l}.{b}.conv2" };
                if (l > 1 && b == 0) block.Add($"layer{l}.{b}.downsample");
                names.AddRange(block);
            }
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        void Put(string name, string init)
        {
            if (!graph.Initializers.TryGetValue(init, out var t)) throw new InfluenceSharpException($"{onnxPath}: initializer '{init}' not found");
            result[name] = t;
        }
        int i = 0;
        while (i < pairs.Count)
        {
            string prefix = names[i];
            int size = prefix == "" ? 1 : prefix.EndsWith(".0.conv1", StringComparison.Ordinal) && !prefix.StartsWith("layer1", StringComparison.Ordinal) ? 3 : 2;
            // Within a block, the 1×1 convolution is the shortcut; the 3×3 ones are conv1, conv2 in order.
            var group = pairs.Skip(i).Take(size).ToList();
            var shortcut = group.Where(g => graph.Initializers[g.Conv].shape[^1] == 1).ToList();
            var main = group.Where(g => graph.Initializers[g.Conv].shape[^1] != 1).ToList();
            var targets = names.Skip(i).Take(size).ToList();
            if (shortcut.Count != targets.Count(t => t.EndsWith("downsample", StringComparison.Ordinal)))
                throw new InfluenceSharpException($"{onnxPath}: unexpected block structure at {prefix}");
            var ordered = main.Concat(shortcut).ToList();
            for (int k = 0; k < ordered.Count; k++)
            {
                string t = targets[k];
                bool ds = t.EndsWith("downsample", StringComparison.Ordinal);
                string conv = prefix == "" ? "conv1" : ds ? t + ".0" : t;
                string bn = prefix == "" ? "bn1" : ds ? t + ".1" : t.Replace(".conv", ".bn", StringComparison.Ordinal);
                Put(conv + ".weight", ordered[k].Conv);
                Put(bn + ".weight", ordered[k].Bn[0]);
                Put(bn + ".bias", ordered[k].Bn[1]);
                Put(bn + ".running_mean", ordered[k].Bn[2]);
                Put(bn + ".running_var", ordered[k].Bn[3]);
                result[bn + ".num_batches_tracked"] = tensor(0L);
            }
            i += size;
        }
        result["conv1.weight"] = result["conv1.weight"].flip(1).contiguous();   // BGR → RGB
        // Check every tensor against the architecture (the wrong mapping would show as a shape error).
        using (var reference = new ResNet18(3, 2, cntkVariant: true))
            foreach (var (name, t) in reference.state_dict())
                if (!name.StartsWith("fc.", StringComparison.Ordinal)
                    && (!result.TryGetValue(name, out var got) || !got.shape.SequenceEqual(t.shape)))
                    throw new InfluenceSharpException($"{onnxPath}: converted '{name}' does not fit the ResNet-18 layout");
        return result;
    }
}

/// <summary>The parts of an ONNX model (protobuf) that weight conversion needs: nodes (op type,
/// inputs, outputs) and float initializers. A minimal wire-format reader, no dependencies.</summary>
internal sealed class OnnxGraph
{
    public sealed record Node(string Name, string OpType, string[] Inputs, string[] Outputs);

    public List<Node> Nodes { get; } = new();
    public Dictionary<string, Tensor> Initializers { get; } = new(StringComparer.Ordinal);

    public static OnnxGraph Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        var g = new OnnxGraph();
        try
        {
            foreach (var (field, value) in Fields(bytes))
                if (field == 7) g.ReadGraph(value);   // ModelProto.graph
        }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidDataException)
        {
            throw new InfluenceSharpException($"{path}: not a readable ONNX model ({e.Message})");
        }
        return g;
    }

    void ReadGraph(ReadOnlyMemory<byte> graph)
    {
        foreach (var (field, value) in Fields(graph))
        {
            if (field == 1) Nodes.Add(ReadNode(value));        // GraphProto.node
            else if (field == 5) ReadTensor(value);            // GraphProto.initializer
        }
    }

    static Node ReadNode(ReadOnlyMemory<byte> m)
    {
        var inputs = new List<string>(); var outputs = new List<string>(); string name = "", op = "";
        foreach (var (field, value) in Fields(m))
            switch (field)
            {
                case 1: inputs.Add(Encoding.UTF8.GetString(value.Span)); break;
                case 2: outputs.Add(Encoding.UTF8.GetString(value.Span)); break;
                case 3: name = Encoding.UTF8.GetString(value.Span); break;
                case 4: op = Encoding.UTF8.GetString(value.Span); break;
            }
        return new Node(name, op, inputs.ToArray(), outputs.ToArray());
    }

    void ReadTensor(ReadOnlyMemory<byte> m)
    {
        var dims = new List<long>(); string name = ""; int type = 0; byte[]? raw = null; var floats = new List<float>();
        foreach (var (field, value, varint) in FieldsWithVarints(m))
            switch (field)
            {
                case 1: if (value.IsEmpty) dims.Add(varint); else dims.AddRange(PackedVarints(value)); break;
                case 2: type = (int)varint; break;
                case 4:
                    if (value.Length >= 4 && value.Length % 4 == 0)
                        for (int i = 0; i < value.Length; i += 4) floats.Add(BinaryPrimitives.ReadSingleLittleEndian(value.Span[i..]));
                    else floats.Add(BitConverter.Int32BitsToSingle((int)varint));
                    break;
                case 8: name = Encoding.UTF8.GetString(value.Span); break;
                case 9: raw = value.ToArray(); break;
            }
        if (type != 1) return;   // FLOAT only: the weights
        float[] data = raw is not null ? Enumerable.Range(0, raw.Length / 4).Select(i => BinaryPrimitives.ReadSingleLittleEndian(raw.AsSpan(4 * i))).ToArray() : floats.ToArray();
        var t = tensor(data).reshape(dims.ToArray());
        Initializers[name] = t.DetachFromDisposeScope();
    }

    static IEnumerable<long> PackedVarints(ReadOnlyMemory<byte> m)
    {
        int pos = 0;
        while (pos < m.Length) yield return (long)Varint(m.Span, ref pos);
    }

    static ulong Varint(ReadOnlySpan<byte> s, ref int pos)
    {
        ulong v = 0; int shift = 0;
        while (true)
        {
            byte b = s[pos++];
            v |= (ulong)(b & 0x7f) << shift;
            if ((b & 0x80) == 0) return v;
            shift += 7;
            if (shift > 63) throw new InvalidDataException("varint too long");
        }
    }

    static IEnumerable<(int Field, ReadOnlyMemory<byte> Value)> Fields(ReadOnlyMemory<byte> m) =>
        FieldsWithVarints(m).Select(f => (f.Field, f.Value));

    /// <summary>Every field: length-delimited ones give their bytes, varints and fixed-width ones their value.</summary>
    static IEnumerable<(int Field, ReadOnlyMemory<byte> Value, long Varint)> FieldsWithVarints(ReadOnlyMemory<byte> m)
    {
        int pos = 0;
        while (pos < m.Length)
        {
            ulong key = Varint(m.Span, ref pos);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            switch (wire)
            {
                case 0: yield return (field, ReadOnlyMemory<byte>.Empty, (long)Varint(m.Span, ref pos)); break;
                case 1: yield return (field, ReadOnlyMemory<byte>.Empty, BinaryPrimitives.ReadInt64LittleEndian(m.Span[pos..])); pos += 8; break;
                case 2:
                    int len = checked((int)Varint(m.Span, ref pos));
                    yield return (field, m.Slice(pos, len), 0); pos += len; break;
                case 5: yield return (field, ReadOnlyMemory<byte>.Empty, BinaryPrimitives.ReadInt32LittleEndian(m.Span[pos..])); pos += 4; break;
                default: throw new InvalidDataException($"wire type {wire}");
            }
        }
    }
}
