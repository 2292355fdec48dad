using System.Collections;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>What loading initial weights did: the file's hash and the parameters left at their fresh
/// initialisation because the file's tensor had another shape (the classifier head of a model
/// trained for another number of classes).</summary>
public sealed record InitResult(string Hash, string[] Skipped);

/// <summary>
/// Starting weights for training (<c>train --init</c>) and weights trained elsewhere
/// (<c>import</c>): a safetensors file (ours, or one written by PyTorch / the safetensors library,
/// with or without our sidecar) or a PyTorch state dict saved with <c>torch.save(model.state_dict(), ...)</c>
/// (<c>.pt</c>, <c>.pth</c>, <c>.bin</c>; read with TorchSharp.PyBridge). Tensor names follow PyTorch.
/// </summary>
public static class InitWeights
{
    /// <summary>Reads a weights file into a name → tensor dictionary (tensors owned by the caller).</summary>
    public static Dictionary<string, Tensor> Read(string path)
    {
        RequireFile(path);
        string ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext == ".safetensors")
        {
            using var file = SafeTensors.Load(path);
            return file.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.detach().clone().DetachFromDisposeScope());
        }
        if (ext is ".pt" or ".pth" or ".bin" or ".ckpt")
        {
            RequirePyTorchZip(path);
            try
            {
                using var stream = File.OpenRead(path);
                var dict = TorchSharp.PyBridge.PyTorchUnpickler.UnpickleStateDict(stream);
                var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
                foreach (DictionaryEntry e in (IDictionary)dict)
                {
                    if (e.Key is not string name) continue;
                    if (e.Value is Tensor t) result[name] = t;
                    else throw new InfluenceSharpException($"{path}: entry '{name}' is not a tensor: save the model's state_dict() (torch.save(model.state_dict(), path)), not a training checkpoint dictionary or the whole model");
                }
                return result;
            }
            catch (Exception e) when (e is not InfluenceSharpException and not OutOfMemoryException)
            {
                throw new InfluenceSharpException($"{path}: cannot read a PyTorch state dict ({e.GetType().Name}: {e.Message}); save it with torch.save(model.state_dict(), path)");
            }
        }
        throw new InfluenceSharpException($"{path}: unknown weights format '{ext}' (use .safetensors, or a PyTorch state dict .pt/.pth/.bin)");
    }

    /// <summary>A weights file that exists and is a file (a directory or a missing path named as such).</summary>
    static void RequireFile(string path)
    {
        if (Directory.Exists(path)) throw new InfluenceSharpException($"{path}: is a directory; give a weights file (.safetensors, or a PyTorch state dict .pt/.pth/.bin)");
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: weights file not found");
    }

    /// <summary>torch.save writes a zip archive (since PyTorch 1.6); an older file starts with a
    /// pickle opcode, anything else is not a PyTorch file at all.</summary>
    static void RequirePyTorchZip(string path)
    {
        var head = new byte[4];
        int n;
        using (var f = File.OpenRead(path)) n = f.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (n == 4 && head[0] == (byte)'P' && head[1] == (byte)'K' && head[2] == 3 && head[3] == 4) return;
        if (n > 0 && head[0] == 0x80)
            throw new InfluenceSharpException($"{path}: saved in PyTorch's legacy (pre-1.6) format, which cannot be read; re-save it in PyTorch 1.6 or later with torch.save(model.state_dict(), path), or as .safetensors");
        string what = n == 0 ? "an empty file"
            : head.Take(n).All(b => b is 9 or 10 or 13 || (b >= 32 && b < 127)) ? "a text file"
            : $"a file starting with bytes {Convert.ToHexString(head, 0, n)}";
        throw new InfluenceSharpException($"{path}: not a PyTorch state dict ({what}; torch.save writes a zip archive): save the weights with torch.save(model.state_dict(), path), or as .safetensors");
    }

    /// <summary>The names of a model's parameters (and buffers) that belong to its classifier head.</summary>
    public static bool IsHead(string name, string? head) => head is not null && (name == head || name.StartsWith(head + ".", StringComparison.Ordinal));

    /// <summary>Loads <paramref name="path"/> into <paramref name="model"/>. Every tensor of the model
    /// must be in the file with the same shape, except: the classifier head's tensors (the last Linear
    /// layer, <c>fc</c> for resnet18) when their shape differs (another class count) are left as freshly
    /// initialised and listed in <see cref="InitResult.Skipped"/>, as are head tensors the file lacks (a
    /// backbone); and BatchNorm's
    /// <c>num_batches_tracked</c>, which older PyTorch files lack. Any other missing, extra or
    /// mis-shaped tensor is an error naming it. A "module." prefix (DataParallel) is removed.</summary>
    /// <param name="model">The model (freshly built).</param>
    /// <param name="path">The weights file.</param>
    /// <param name="expectedHash">When given, the file must still have this hash (a recorded init file).</param>
    /// <param name="strictHead">Refuse a head of another shape too (import: the weights are the model).</param>
    public static InitResult Apply(nn.Module model, string path, string? expectedHash = null, bool strictHead = false)
    {
        RequireFile(path);
        string hash = Checkpoint.HashFile(path);
        if (expectedHash is not null && hash != expectedHash)
            throw new InfluenceSharpException($"{path}: the initial weights file has changed since the run started (hash {hash}, recorded {expectedHash})");
        var file = Read(path);
        try
        {
            if (file.Count > 0 && file.Keys.All(k => k.StartsWith("module.", StringComparison.Ordinal)))
                file = file.ToDictionary(kv => kv.Key["module.".Length..], kv => kv.Value);
            var state = model.state_dict();
            string? head = ModelSpec.HeadOf(model);
            var skipped = new List<string>();
            var errors = new List<string>();
            foreach (var (name, t) in state)
            {
                if (!file.TryGetValue(name, out var src))
                {
                    if (!strictHead && IsHead(name, head)) skipped.Add(name);
                    else if (!name.EndsWith("num_batches_tracked", StringComparison.Ordinal)) errors.Add($"missing '{name}'");
                    continue;
                }
                if (!src.shape.SequenceEqual(t.shape))
                {
                    if (!strictHead && IsHead(name, head)) { skipped.Add(name); continue; }
                    errors.Add($"'{name}' is [{string.Join(",", src.shape)}] in the file, [{string.Join(",", t.shape)}] in the model");
                }
            }
            foreach (var name in file.Keys.Where(k => !state.ContainsKey(k)).Order(StringComparer.Ordinal))
                errors.Add($"unexpected '{name}'");
            if (errors.Count > 0)
                throw new InfluenceSharpException($"{path}: the weights do not fit the model: {string.Join("; ", errors.Take(6))}{(errors.Count > 6 ? $" (+{errors.Count - 6} more)" : "")}{ChannelHint(model, file)}");
            RequireFinite(path, file, state.Keys.Where(k => !skipped.Contains(k)));
            using (no_grad())
                foreach (var (name, t) in state)
                {
                    if (!file.TryGetValue(name, out var src) || skipped.Contains(name)) continue;
                    using var c = src.to(t.dtype, t.device);
                    t.copy_(c);
                }
            return new InitResult(hash, skipped.ToArray());
        }
        finally
        {
            foreach (var t in file.Values) t.Dispose();
        }
    }

    /// <summary>Refuses NaN or infinite values in the tensors that are loaded, naming the first
    /// (training from them would only report a divergence).</summary>
    static void RequireFinite(string path, Dictionary<string, Tensor> file, IEnumerable<string> names)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        foreach (var name in names)
            if (file.TryGetValue(name, out var t) && t.is_floating_point() && !t.isfinite().all().item<bool>())
                throw new InfluenceSharpException($"{path}: tensor '{name}' holds NaN or infinite values; these weights cannot be trained from (was the model that saved them diverged?)");
    }

    /// <summary>When the model's first convolution takes another number of input channels than the
    /// file's, a hint to load the data with the file's channel count.</summary>
    static string ChannelHint(nn.Module model, Dictionary<string, Tensor> file)
    {
        var first = model.named_parameters().FirstOrDefault(p => p.parameter.dim() == 4);
        if (first.name is null || !file.TryGetValue(first.name, out var src) || src.dim() != 4) return "";
        long want = first.parameter.shape[1], have = src.shape[1];
        if (want == have || have is not (1 or 3)) return "";
        return $". The file's first layer ('{first.name}') takes {have}-channel images and the data have {want}: load the data with {have} channels"
            + $" (an image folder: --channels {have}, " + (have == 3 ? "which repeats grey images in each colour channel)" : "which converts colour images to grey)");
    }

    /// <summary>Marks the parameters named by <paramref name="prefixes"/> (a name or a module prefix:
    /// <c>layer1</c> covers <c>layer1.0.conv1.weight</c>) as fixed (requires_grad false). A prefix that
    /// names no parameter is an error. Returns the frozen parameter names.</summary>
    public static string[] Freeze(nn.Module model, IReadOnlyList<string>? prefixes)
    {
        if (prefixes is null || prefixes.Count == 0) return Array.Empty<string>();
        var named = model.named_parameters().ToList();
        var frozen = new List<string>();
        foreach (var p in prefixes)
            if (!named.Any(n => Covers(p, n.name)))
                throw new InfluenceSharpException($"--freeze {p}: no parameter of the model has this name or prefix (its parameters: {string.Join(", ", named.Select(n => n.name).Take(8))}{(named.Count > 8 ? ", ..." : "")})");
        foreach (var (name, param) in named)
            if (prefixes.Any(p => Covers(p, name)))
            {
                param.requires_grad = false;
                frozen.Add(name);
            }
        return frozen.ToArray();
    }

    static bool Covers(string prefix, string name) => name == prefix || name.StartsWith(prefix + ".", StringComparison.Ordinal);

    /// <summary>Puts BatchNorm layers whose parameters are all frozen in eval mode (after
    /// <c>model.train()</c>): a frozen part of the network then stays exactly as loaded, running
    /// statistics included.</summary>
    public static void FrozenBatchNormToEval(nn.Module model)
    {
        foreach (var (_, m) in model.named_modules())
            if (m is TorchSharp.Modules.BatchNorm2d or TorchSharp.Modules.BatchNorm1d)
            {
                var ps = m.parameters().ToList();
                if (ps.Count > 0 && ps.All(p => !p.requires_grad)) m.eval();
            }
    }
}
