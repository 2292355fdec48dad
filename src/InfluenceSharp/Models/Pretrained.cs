using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

/// <summary>
/// The ImageNet ResNet-18 that the NuGet package <c>Microsoft.ML.DnnImageFeaturizer.ResNet18</c>
/// (0.23.1) ships as ONNX (a CNTK export with generated tensor names), converted for
/// <see cref="ResNet18.ImageNet"/>: the network exactly as the ONNX graph computes it, with the
/// preprocessing its weights expect as the model's fixed first step. The package is restored from
/// the user's NuGet feeds at first use (<see cref="NuGetPackage"/>); converted weights are cached.
/// </summary>
/// <remarks>
/// The CNTK network is not torchvision's: its last stage has three blocks (layer4.0-2) and it pads
/// asymmetrically (stem convolution, max-pool and strided 3×3 convolutions). Its inputs are BGR in
/// 0–255 minus a per-pixel mean image (ResNetPreprocess.onnx in the same package: channel swap, then
/// subtraction; no division by a standard deviation). Here conv1 is re-ordered to take RGB, and the
/// model's <see cref="ResNet18.ImageNetInput"/> maps the data set's normalised inputs back to 0–255
/// (grey replicated to R, G, B) and subtracts the mean image resized bilinearly to the input size:
/// resizing is linear, so that is the mean of the images resized the same way. The converted
/// backbone has no classifier (the ONNX model ends at the pooled 512 features): <c>fc</c> starts fresh.
/// </remarks>
public static class Pretrained
{
    public const string PackageId = "microsoft.ml.dnnimagefeaturizer.resnet18";
    public const string PackageName = "Microsoft.ML.DnnImageFeaturizer.ResNet18";
    public const string PackageVersion = "0.23.1";
    /// <summary>The package's files on disk after restore (.nupkg and extracted), for progress.</summary>
    public const long PackageBytes = 123_858_050;
    /// <summary>Set to an ONNX file to use instead of the one in the NuGet packages folder (the
    /// preprocessing model is then looked for beside it, or in ../ResNetPrepOnnx/ as in the package).</summary>
    public const string OnnxVariable = "INFLUENCESHARP_RESNET18_ONNX";
    /// <summary>Set to a NuGet.Config file to restore the package with (default: NuGet's own search
    /// from a temporary folder, i.e. the user's and the machine's configuration).</summary>
    public const string NuGetConfigVariable = "INFLUENCESHARP_NUGET_CONFIG";
    /// <summary>Set to a directory to cache converted weights in (default: $XDG_CACHE_HOME or ~/.cache, /influencesharp).</summary>
    public const string CacheVariable = "INFLUENCESHARP_CACHE";

    static string OnnxIn(string packageDir) => Path.Combine(packageDir, "tools", "DnnImageModels", "ResNet18Onnx", "ResNet18.onnx");
    static string PreprocessIn(string packageDir) => Path.Combine(packageDir, "tools", "DnnImageModels", "ResNetPrepOnnx", "ResNetPreprocess.onnx");

    /// <summary>The package's folder in a NuGet global packages folder (default: <see cref="NuGetPackage.GlobalPackagesFolder"/>).</summary>
    public static string PackageDir(string? packagesRoot = null) => Path.Combine(packagesRoot ?? NuGetPackage.GlobalPackagesFolder(), PackageId, PackageVersion);

    /// <summary>The ONNX file in the NuGet global packages folder ($NUGET_PACKAGES or ~/.nuget/packages),
    /// or the file named by INFLUENCESHARP_RESNET18_ONNX; null when neither is there.</summary>
    public static string? FindImageNetResNet18Onnx()
    {
        if (Environment.GetEnvironmentVariable(OnnxVariable) is { Length: > 0 } env) return File.Exists(env) ? env : null;
        string path = OnnxIn(PackageDir());
        return File.Exists(path) ? path : null;
    }

    /// <summary>The preprocessing model (ResNetPreprocess.onnx) that goes with <paramref name="onnxPath"/>:
    /// in the package layout, or beside it; null when not found.</summary>
    public static string? FindPreprocessOnnx(string onnxPath)
    {
        string dir = Path.GetDirectoryName(Path.GetFullPath(onnxPath))!;
        foreach (var p in new[] { Path.Combine(dir, "..", "ResNetPrepOnnx", "ResNetPreprocess.onnx"), Path.Combine(dir, "ResNetPreprocess.onnx") })
            if (File.Exists(p)) return Path.GetFullPath(p);
        return null;
    }

    /// <summary>The two ONNX files (network, preprocessing). When the package is not in the packages
    /// folder it is restored first from the configured NuGet feeds (with progress), as torchvision
    /// downloads its weights at first use.</summary>
    /// <param name="progress">Progress of the restore (megabytes written to the packages folder).</param>
    /// <param name="packagesRoot">The NuGet global packages folder [default: $NUGET_PACKAGES or ~/.nuget/packages].</param>
    /// <param name="nugetConfig">A NuGet.Config to restore with [default: $INFLUENCESHARP_NUGET_CONFIG, else NuGet's own search].</param>
    /// <exception cref="InfluenceSharpException">The restore failed (offline, no feed has the package).</exception>
    public static (string Onnx, string Preprocess) ImageNetFiles(IProgress<ProgressUpdate>? progress = null, string? packagesRoot = null, string? nugetConfig = null)
    {
        string? onnx = packagesRoot is null ? FindImageNetResNet18Onnx() : File.Exists(OnnxIn(PackageDir(packagesRoot))) ? OnnxIn(PackageDir(packagesRoot)) : null;
        if (onnx is null)
        {
            if (packagesRoot is null && Environment.GetEnvironmentVariable(OnnxVariable) is { Length: > 0 } env)
                throw new InfluenceSharpException($"{OnnxVariable}={env}: file not found");
            packagesRoot ??= NuGetPackage.GlobalPackagesFolder();
            nugetConfig ??= Environment.GetEnvironmentVariable(NuGetConfigVariable) is { Length: > 0 } c ? c : null;
            NuGetPackage.Restore(PackageName, PackageVersion, packagesRoot, nugetConfig, PackageBytes, progress,
                "--pretrained imagenet: the ImageNet ResNet-18");
            onnx = OnnxIn(PackageDir(packagesRoot));
            if (!File.Exists(onnx))
                throw new InfluenceSharpException($"--pretrained imagenet: {PackageName} {PackageVersion} was restored to {PackageDir(packagesRoot)} but has no {Path.GetRelativePath(PackageDir(packagesRoot), onnx)}");
        }
        string prep = FindPreprocessOnnx(onnx) ?? throw new InfluenceSharpException(
            $"{onnx}: the preprocessing model ResNetPreprocess.onnx of the same package is not beside it (expected ../ResNetPrepOnnx/ResNetPreprocess.onnx)");
        return (onnx, prep);
    }

    public static string DefaultCacheDir() =>
        Environment.GetEnvironmentVariable(CacheVariable) is { Length: > 0 } c ? c
        : Path.Combine(Environment.GetEnvironmentVariable("XDG_CACHE_HOME") is { Length: > 0 } x ? x
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache"), "influencesharp");

    /// <summary>Converted weights for <see cref="ResNet18.ImageNet"/> and what its input transform does, in words.</summary>
    public sealed record ImageNetWeights(string Path, string Preprocessing);

    /// <summary>The ImageNet weights for a data set: restored and converted at first use, then cached.
    /// Image data sets (<see cref="ImageDataset"/>) have their normalisation undone in the model;
    /// other inputs (float tensors) go to the network as stored.</summary>
    public static ImageNetWeights ForData(LabeledDataset train, IProgress<ProgressUpdate>? progress = null, string? cacheDir = null)
    {
        if (train.IsFlat) throw new InfluenceSharpException($"--pretrained imagenet: the data ({train.Name}) are flat feature vectors, not images");
        var (onnx, prep) = ImageNetFiles(progress);
        (float[] Mean, float[] Std)? norm = train is ImageDataset img ? img.Normalization : null;
        return ImageNetResNet18(train.Channels, train.Height, train.Width, norm, cacheDir, onnx, prep);
    }

    /// <summary>The converted ImageNet ResNet-18 weights for <see cref="ResNet18.ImageNet"/> at
    /// <paramref name="channels"/> x <paramref name="height"/> x <paramref name="width"/> inputs
    /// (safetensors, torchvision names, all 22 convolutions, no <c>fc</c>, plus the input transform's
    /// buffers), converted at first use and cached.</summary>
    /// <param name="channels">Input channels: 3 (RGB) or 1 (grey, replicated to R, G, B).</param>
    /// <param name="height">Input height.</param>
    /// <param name="width">Input width.</param>
    /// <param name="normalization">The data's per-channel normalisation x = (pixel/255 − mean)/std, undone
    /// in the model; null: the inputs are taken as RGB values in 0–255 already minus nothing (as stored).</param>
    /// <param name="cacheDir">Where converted weights are cached [default: <see cref="DefaultCacheDir"/>].</param>
    /// <param name="onnxPath">The network's ONNX file [default: the package's, restored if needed].</param>
    /// <param name="preprocessPath">ResNetPreprocess.onnx [default: the one beside <paramref name="onnxPath"/>].</param>
    public static ImageNetWeights ImageNetResNet18(int channels, int height, int width, (float[] Mean, float[] Std)? normalization,
        string? cacheDir = null, string? onnxPath = null, string? preprocessPath = null)
    {
        if (channels != 1 && channels != 3)
            throw new InfluenceSharpException($"--pretrained imagenet: the inputs have {channels} channels; the ImageNet weights take 3 (RGB) or 1 (grey)");
        if (height < ModelSpec.ResNet18MinSize || width < ModelSpec.ResNet18MinSize)
            throw new InfluenceSharpException($"--pretrained imagenet: inputs are {height}x{width}; resnet18 needs at least {ModelSpec.ResNet18MinSize}x{ModelSpec.ResNet18MinSize}");
        if (onnxPath is null) (onnxPath, preprocessPath) = ImageNetFiles();
        preprocessPath ??= FindPreprocessOnnx(onnxPath) ?? throw new InfluenceSharpException($"{onnxPath}: ResNetPreprocess.onnx not found beside it");
        cacheDir ??= DefaultCacheDir();
        string onnxHash = Formats.Checksum.Sha256OfFile(onnxPath)[..16], prepHash = Formats.Checksum.Sha256OfFile(preprocessPath)[..16];
        string normText = normalization is { } nz
            ? string.Join(",", nz.Mean.Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + "/" + string.Join(",", nz.Std.Select(v => v.ToString("R", CultureInfo.InvariantCulture)))
            : "none";
        string key = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(
            $"{onnxHash}\n{prepHash}\n{channels}x{height}x{width}\n{normText}\n")))[..16];
        string target = Path.Combine(cacheDir, $"resnet18-imagenet-{channels}x{height}x{width}-{key}.safetensors");
        using var scope = NewDisposeScope();
        var meanRgb = ReadMeanImage(preprocessPath).flip(1);   // the file's mean image is BGR
        if (meanRgb.shape[2] != height || meanRgb.shape[3] != width)
            meanRgb = nn.functional.interpolate(meanRgb, new long[] { height, width }, mode: InterpolationMode.Bilinear, align_corners: false);
        string description = Describe(channels, height, width, normalization, meanRgb);
        if (File.Exists(target)) return new ImageNetWeights(target, description);
        Directory.CreateDirectory(cacheDir);
        var state = ConvertResNet18Onnx(onnxPath);
        // x_net = pixel − mean image, pixel = 255 (std·x + mean) per data channel (R, G, B from one grey channel).
        var scale = ones(1, 3, 1, 1); var shift = -meanRgb;
        if (normalization is { } n)
        {
            var std = tensor(Enumerable.Range(0, 3).Select(k => 255f * n.Std[channels == 1 ? 0 : k]).ToArray()).reshape(1, 3, 1, 1);
            var mean = tensor(Enumerable.Range(0, 3).Select(k => 255f * n.Mean[channels == 1 ? 0 : k]).ToArray()).reshape(1, 3, 1, 1);
            scale = std; shift = mean - meanRgb;
        }
        else shift = zeros_like(meanRgb);
        state["input.scale"] = scale.contiguous();
        state["input.shift"] = shift.contiguous();
        SafeTensors.Save(target, state, new Dictionary<string, string>
        {
            ["format"] = "pt", ["architecture"] = ModelSpec.ImageNetResNet18,
            ["source"] = $"{PackageName} {PackageVersion}: ResNet18.onnx (sha256 {onnxHash}...), ResNetPreprocess.onnx (sha256 {prepHash}...)",
            ["preprocessing"] = description,
        });
        return new ImageNetWeights(target, description);
    }

    /// <summary>The input transform of <see cref="ImageNetResNet18"/>, in words (train prints it; run.json records it).</summary>
    static string Describe(int channels, int height, int width, (float[] Mean, float[] Std)? normalization, Tensor meanRgb)
    {
        var m = meanRgb.mean(new long[] { 0, 2, 3 }).data<float>().ToArray();
        string meanText = string.Format(CultureInfo.InvariantCulture, "ImageNet mean image of {0} {1} resized bilinearly to {2}x{3} (channel means R {4:F1}, G {5:F1}, B {6:F1})",
            PackageName, PackageVersion, height, width, m[0], m[1], m[2]);
        string from = normalization is { } n
            ? string.Format(CultureInfo.InvariantCulture, "the data normalisation x = (pixel/255 - mean)/std undone, mean {0}, std {1}",
                string.Join("/", n.Mean.Select(v => v.ToString("G4", CultureInfo.InvariantCulture))), string.Join("/", n.Std.Select(v => v.ToString("G4", CultureInfo.InvariantCulture))))
            : "float inputs taken as stored (they should be RGB pixel values in 0-255 minus that mean image; nothing is subtracted)";
        return $"RGB in 0-255 minus the {meanText}, no division by a standard deviation ({from}"
            + (channels == 1 ? "; grey replicated to R, G, B" : "") + "; the original's BGR conv1 re-ordered to take RGB)";
    }

    /// <summary>The mean image [1, 3, 224, 224] (BGR) of ResNetPreprocess.onnx, checked to be the graph
    /// Split → Concat (RGB to BGR) → Sub(mean image).</summary>
    public static Tensor ReadMeanImage(string preprocessPath)
    {
        var graph = OnnxGraph.Read(preprocessPath);
        var ops = graph.Nodes.Select(n => n.OpType).ToArray();
        var sub = graph.Nodes.FirstOrDefault(n => n.OpType == "Sub");
        if (!ops.SequenceEqual(new[] { "Split", "Concat", "Sub" }) || sub is null || sub.Inputs.Length != 2
            || !graph.Initializers.TryGetValue(sub.Inputs[1], out var mean) || !mean.shape.SequenceEqual(new long[] { 1, 3, 224, 224 }))
            throw new InfluenceSharpException($"{preprocessPath}: not the expected ResNet preprocessing graph (Split, Concat, Sub of a [1,3,224,224] mean image); found {string.Join(", ", ops)}");
        // Split outputs R, G, B; Concat takes them as B, G, R.
        var split = graph.Nodes[0]; var concat = graph.Nodes[1];
        if (split.Outputs.Length != 3 || !concat.Inputs.SequenceEqual(split.Outputs.Reverse()))
            throw new InfluenceSharpException($"{preprocessPath}: the preprocessing graph does not swap RGB to BGR as expected");
        return mean.alias();
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
