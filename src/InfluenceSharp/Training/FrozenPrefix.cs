using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Formats;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>
/// The outputs of a model's frozen leading stages (<see cref="IStagedModel"/>), computed once per
/// image and read back instead of recomputed at every step (<see cref="TrainOptions.CacheFrozenPrefix"/>).
/// Exact up to float rounding: a frozen stage's BatchNorms are in eval mode during training
/// (<see cref="InitWeights.FrozenBatchNormToEval"/>) and without augmentation its output for an
/// example is a fixed function of the image.
/// <para>The outputs live in a float32 file [images of the store, ...] read from disk row by row
/// (<see cref="FilePixelStore"/>), one row per image of the data's <see cref="PixelStore"/>: every
/// subset of the same images (a split, a removal, an LDS subset) reads the rows of its own images
/// (<see cref="ImageDataset.Row"/>). The file's name is a hash of the frozen stages' weights and
/// buffers, what the stages compute, the split point and the store's pixels; it goes next to a
/// store file on disk (an image folder's decode cache), or, for data in memory or in a
/// directory that cannot be written, under the user's local application data.</para>
/// </summary>
public sealed class FrozenPrefix
{
    const string Format = "influencesharp-frozen-prefix/1";
    const string Option = "--cache-frozen-prefix";

    readonly IStagedModel staged;
    readonly FilePixelStore rows;
    readonly long[] rowShape;
    readonly int rowFloats;

    FrozenPrefix(IStagedModel staged, int split, ImageDataset data, string path, FilePixelStore rows, long[] rowShape, bool computed)
    {
        this.staged = staged; Split = split; Store = data.Store; Channels = data.Channels; Height = data.Height; Width = data.Width;
        Path = path; this.rows = rows; this.rowShape = rowShape; Computed = computed;
        rowFloats = (int)rowShape.Aggregate(1L, (a, b) => a * b);
    }

    /// <summary>Stages [0, Split) are cached.</summary>
    public int Split { get; }
    /// <summary>The images whose outputs the file holds.</summary>
    public PixelStore Store { get; }
    int Channels { get; }
    int Height { get; }
    int Width { get; }
    /// <summary>The cache file.</summary>
    public string Path { get; }
    /// <summary>True when this call computed the file (false: it was there).</summary>
    public bool Computed { get; }
    /// <summary>The shape of one example's prefix output.</summary>
    public IReadOnlyList<long> RowShape => rowShape;

    /// <summary>The training options' refusals that do not need the model or data.</summary>
    public static void CheckOptions(TrainOptions o)
    {
        if (!o.CacheFrozenPrefix) return;
        if (o.Augment) throw new InfluenceSharpException($"{Option}: not with --augment (an augmented image goes through the frozen layers differently at every step, so there is no fixed output to cache)");
        if (o.LbfgsTolerance is not null) throw new InfluenceSharpException($"{Option}: not with --lbfgs-tol (full-batch L-BFGS is for models without frozen layers)");
    }

    /// <summary>The number of leading stages of <paramref name="model"/> whose parameters are all
    /// frozen, and its stages; refuses (naming why) a model that cannot be split, or whose first
    /// stage with parameters is not frozen, or whose frozen prefix holds a module that behaves
    /// differently in training (dropout, BatchNorm without parameters).</summary>
    public static (IStagedModel Staged, int Split) SplitPoint(nn.Module<Tensor, Tensor> model)
    {
        var staged = ModelStages.Of(model)
            ?? throw new InfluenceSharpException($"{Option}: the model ({model.GetType().Name}) cannot be split into a frozen prefix and the rest (resnet18, resnet9 and other Sequential models can)");
        var parameters = model.named_parameters().ToList();
        int split = 0;
        bool anyFrozen = false;
        foreach (var stage in staged.Stages)
        {
            var own = parameters.Where(p => stage.Covers(p.name)).ToList();
            if (own.Any(p => p.parameter.requires_grad)) break;
            anyFrozen |= own.Count > 0;
            split++;
        }
        // Parameter-free stages right before the first trained one stay in the trained part: they cost little.
        while (split > 0 && !parameters.Any(p => staged.Stages[split - 1].Covers(p.name))) split--;
        if (!anyFrozen || split == 0)
        {
            var first = staged.Stages.FirstOrDefault(s => parameters.Any(p => s.Covers(p.name)));
            throw new InfluenceSharpException($"{Option}: the frozen layers are not a leading part of the model: its first stage with parameters ({first?.Name ?? "?"}: {string.Join(",", first?.Prefixes ?? Array.Empty<string>())}) is trained; freeze the model from its input on (e.g. --freeze conv1,bn1,layer1)");
        }
        if (split == staged.Stages.Count)
            throw new InfluenceSharpException($"{Option}: every stage of the model is frozen; nothing to train");
        var prefixModules = model.named_modules().Where(m => m.name.Length > 0 && staged.Stages.Take(split).Any(s => s.Covers(m.name))).Select(m => m.module).ToList();
        if (prefixModules.Any(m => m is TorchSharp.Modules.Dropout or TorchSharp.Modules.Dropout2d))
            throw new InfluenceSharpException($"{Option}: the frozen layers hold dropout, whose output changes at every step: nothing fixed to cache");
        if (prefixModules.Any(m => m is TorchSharp.Modules.BatchNorm1d or TorchSharp.Modules.BatchNorm2d && !m.parameters().Any()))
            throw new InfluenceSharpException($"{Option}: the frozen layers hold a BatchNorm without parameters, whose batch statistics change at every step: nothing fixed to cache");
        if (parameters.Where(p => staged.Stages.Take(split).Any(s => s.Covers(p.name))).Any(p => p.parameter.dtype != ScalarType.Float32))
            throw new InfluenceSharpException($"{Option}: the frozen layers are not float32");
        return (staged, split);
    }

    /// <summary>Opens (computing it when absent) the cache of <paramref name="model"/>'s frozen
    /// prefix for the images of <paramref name="data"/>'s store.</summary>
    /// <param name="model">The model, its frozen parameters marked (requires_grad false).</param>
    /// <param name="data">Image data (any subset of its store).</param>
    /// <param name="cacheDir">Where the file goes; null: next to the store's file, or the user's local application data.</param>
    /// <param name="progress">Receives the computation's progress.</param>
    public static FrozenPrefix Open(nn.Module<Tensor, Tensor> model, LabeledDataset data, string? cacheDir = null, IProgress<ProgressUpdate>? progress = null)
    {
        if (data is not ImageDataset images)
            throw new InfluenceSharpException($"{Option}: the data ({data.Name}) are not images; the cache holds one row per image of an image store");
        var (staged, split) = SplitPoint(model);
        string key = Key(model, staged, split, images);
        string dir = cacheDir ?? DirectoryFor(images.Store);
        string path = System.IO.Path.Combine(dir, $"prefix-{key}.f32");
        bool computed = false;
        var opened = TryOpen(path, images.Store.Count);
        if (opened is null)
        {
            AtomicFile.Write(path, s => Compute(s, model, staged, split, images, key, progress));
            computed = true;
            opened = TryOpen(path, images.Store.Count) ?? throw new InfluenceSharpException($"{path}: the frozen-prefix cache just written cannot be read back");
        }
        return new FrozenPrefix(staged, split, images, path, opened.Value.Rows, opened.Value.Shape, computed);
    }

    /// <summary>True when <paramref name="data"/>'s examples are images of this cache's store.</summary>
    public bool Covers(LabeledDataset data) => data is ImageDataset im && ReferenceEquals(im.Store, Store)
        && im.Channels == Channels && im.Height == Height && im.Width == Width;

    /// <summary>The prefix outputs of <paramref name="data"/>'s examples <paramref name="indices"/>
    /// (float32 [B, ...]), read from the file by each example's image in the store.</summary>
    public Tensor Inputs(LabeledDataset data, ReadOnlySpan<int> indices)
    {
        if (!Covers(data) || data is not ImageDataset im)
            throw new InfluenceSharpException($"{Option}: the data ({data.Name}) are not images of the store the cache was computed for");
        var buf = new float[(long)indices.Length * rowFloats];
        for (int i = 0; i < indices.Length; i++)
            rows.Read(im.Row(indices[i]), MemoryMarshal.AsBytes(buf.AsSpan(i * rowFloats, rowFloats)));
        return torch.tensor(buf, new[] { (long)indices.Length }.Concat(rowShape).ToArray());
    }

    /// <summary>The rest of the model (stages [Split, n)) on prefix outputs.</summary>
    public Tensor Suffix(Tensor prefixOutputs) => staged.ForwardStages(prefixOutputs, Split, staged.Stages.Count);

    /// <summary>The model's logits of <paramref name="data"/>'s examples: through the cache when it
    /// covers the data, else the whole model.</summary>
    public static Tensor Logits(nn.Module<Tensor, Tensor> model, FrozenPrefix? prefix, LabeledDataset data, ReadOnlySpan<int> indices, Device? device = null)
    {
        if (prefix is not null && prefix.Covers(data))
        {
            var h = prefix.Inputs(data, indices);
            return prefix.Suffix(device is null ? h : h.to(device));
        }
        return model.forward(data.Inputs(indices, device));
    }

    static string Key(nn.Module model, IStagedModel staged, int split, ImageDataset data)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        void Text(string s) => h.AppendData(Encoding.UTF8.GetBytes(s + "\n"));
        Text(Format);
        Text(staged.StageSignature);
        Text(string.Join(",", staged.Stages.Take(split).Select(s => s.Name)));
        // The frozen stages' weights and buffers (BatchNorm statistics), by name.
        using (no_grad())
            foreach (var (name, t) in model.state_dict().OrderBy(kv => kv.Key, StringComparer.Ordinal))
            {
                if (!staged.Stages.Take(split).Any(s => s.Covers(name))) continue;
                Text($"{name} {t.dtype} {string.Join("x", t.shape)}");
                using var c = t.detach().cpu().contiguous();
                h.AppendData(c.bytes);
            }
        // The images as the model sees them: the store's pixels, shape and normalisation.
        var (mean, std) = data.Normalization;
        Text(string.Create(CultureInfo.InvariantCulture, $"{data.Store.Count} {data.Channels}x{data.Height}x{data.Width} mean {string.Join(",", mean)} std {string.Join(",", std)}"));
        int size = data.Store.ImageSize;
        int per = Math.Max(1, (8 << 20) / size);
        var block = new byte[(long)per * size];
        for (long start = 0; start < data.Store.Count; start += per)
        {
            int n = (int)Math.Min(per, data.Store.Count - start);
            data.Store.ReadRange(start, n, block.AsSpan(0, n * size));
            h.AppendData(block, 0, n * size);
        }
        return Convert.ToHexStringLower(h.GetHashAndReset())[..24];
    }

    static string DirectoryFor(PixelStore store)
    {
        if (store is FilePixelStore m && System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(m.Path)) is { } dir && Writable(dir)) return dir;
        string local = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        if (local.Length == 0) local = System.IO.Path.GetTempPath();
        return System.IO.Path.Combine(local, "influencesharp", "prefix-cache");
    }

    static bool Writable(string dir)
    {
        try
        {
            string probe = System.IO.Path.Combine(dir, $".write-test-{Environment.ProcessId}-{Guid.NewGuid():N}");
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>Writes the file: a safetensors header (F32 [N, ...], format in the metadata), then
    /// the prefix outputs of every image of the store, a batch at a time.</summary>
    static void Compute(Stream s, nn.Module<Tensor, Tensor> model, IStagedModel staged, int split, ImageDataset data, string key, IProgress<ProgressUpdate>? progress)
    {
        long n = data.Store.Count;
        // The whole store, image i as example i (labels are not used).
        var all = new ImageDataset(data.Name, data.Store, null, new int[n], data.Channels, data.Height, data.Width, data.NumClasses);
        const int batch = 64;
        bool wasTraining = model.training;
        model.eval();   // the same as training mode for these stages: their BatchNorms are frozen (eval) and there is no dropout
        try
        {
            long[]? shape = null;
            using var bar = ProgressReporter.Start(progress, "frozen-prefix cache", n, "img");
            using var _ = no_grad();
            for (long start = 0; start < n; start += batch)
            {
                using var scope = NewDisposeScope();
                var idx = Enumerable.Range((int)start, (int)Math.Min(batch, n - start)).ToArray();
                var h = staged.ForwardStages(all.Inputs(idx), 0, split).to_type(ScalarType.Float32).contiguous();
                if (shape is null)
                {
                    shape = h.shape.Skip(1).ToArray();
                    WriteHeader(s, n, shape, key);
                }
                s.Write(h.bytes);
                bar?.Update(start + idx.Length);
            }
            bar?.Complete();
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }

    static void WriteHeader(Stream s, long n, long[] shape, string key)
    {
        long bytes = n * shape.Aggregate(1L, (a, b) => a * b) * 4;
        var header = new Dictionary<string, object>
        {
            ["__metadata__"] = new Dictionary<string, string> { ["format"] = Format, ["key"] = key },
            ["prefix"] = new Dictionary<string, object> { ["dtype"] = "F32", ["shape"] = new[] { n }.Concat(shape).ToArray(), ["data_offsets"] = new[] { 0L, bytes } },
        };
        SafeTensors.WriteHeader(s, header);
    }

    /// <summary>Maps an existing cache file after checking its header; null when absent or not a
    /// complete cache of <paramref name="count"/> images (it is then computed again).</summary>
    static (FilePixelStore Rows, long[] Shape)? TryOpen(string path, long count)
    {
        if (!File.Exists(path)) return null;
        try
        {
            long length = new FileInfo(path).Length;
            Span<byte> len = stackalloc byte[8];
            byte[] json;
            using (var f = File.OpenRead(path))
            {
                if (f.ReadAtLeast(len, 8, throwOnEndOfStream: false) < 8) return null;
                ulong headerLength = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(len);
                if (headerLength > 1 << 20 || (long)headerLength + 8 > length) return null;
                json = new byte[headerLength];
                if (f.ReadAtLeast(json, json.Length, throwOnEndOfStream: false) < json.Length) return null;
            }
            using var doc = JsonDocument.Parse(json);
            var root = doc.RootElement;
            if (!root.TryGetProperty("__metadata__", out var meta) || !meta.TryGetProperty("format", out var fmt) || fmt.GetString() != Format) return null;
            var t = root.GetProperty("prefix");
            if (t.GetProperty("dtype").GetString() != "F32") return null;
            var shape = t.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            if (shape.Length < 2 || shape[0] != count || shape.Skip(1).Any(d => d < 1)) return null;
            long rowBytes = shape.Skip(1).Aggregate(1L, (a, b) => a * b) * 4;
            long offset = 8 + json.Length;
            if (offset + count * rowBytes != length) return null;
            return (new FilePixelStore(path, offset, rowBytes, checked((int)rowBytes), count), shape.Skip(1).ToArray());
        }
        catch (Exception e) when (e is IOException or JsonException or InvalidOperationException or KeyNotFoundException or FormatException)
        {
            return null;
        }
    }
}
