using InfluenceSharp.Gradients;
using InfluenceSharp.Storage;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

public sealed record LayerShape(string Name, long Out, long In);

/// <summary>manifest.json of a factors directory: what the factors were fit on and how.</summary>
public sealed record FactorsManifest
{
    public string Format { get; init; } = "influencesharp-factors/1";
    public required FactorStrategy Strategy { get; init; }
    public required FisherType Fisher { get; init; }
    public required string ModelFingerprint { get; init; }
    public required string DataFingerprint { get; init; }
    public required int TrainCount { get; init; }
    public required LayerShape[] Layers { get; init; }
    public required int PartitionSize { get; init; }
    public required int Seed { get; init; }
    public string LibraryVersion { get; init; } = LibraryInfo.Version;
    /// <summary>Checksums of factors.safetensors and of the partial sums (see <see cref="Checksum"/>);
    /// null in a manifest written before checksums were recorded (its files are read unverified).</summary>
    public Dictionary<string, string>? Checksums { get; init; }

    /// <summary>Throws, naming the first differing field, when two manifests do not describe the
    /// same fit (library version aside).</summary>
    public void Require(FactorsManifest expected, string path)
    {
        void Check(string field, object found, object want)
        {
            if (!Equals(found, want))
                throw new InfluenceSharpException($"{path}: factors were fit with {field} = {found}, but this run has {field} = {want}" +
                    (field == "model_fingerprint" ? " (factors from another checkpoint)" : field == "data_fingerprint" ? " (factors from other training data)" : ""));
        }
        Check("strategy", Strategy, expected.Strategy);
        Check("layers", string.Join(";", Layers.Select(l => $"{l.Name}:{l.Out}x{l.In}")), string.Join(";", expected.Layers.Select(l => $"{l.Name}:{l.Out}x{l.In}")));
        Check("model_fingerprint", ModelFingerprint, expected.ModelFingerprint);
        Check("data_fingerprint", DataFingerprint, expected.DataFingerprint);
        Check("train_count", TrainCount, expected.TrainCount);
        Check("fisher", Fisher, expected.Fisher);
        Check("partition_size", PartitionSize, expected.PartitionSize);
        Check("seed", Seed, expected.Seed);
    }

    public static LayerShape[] ShapesOf(IEnumerable<TrackedLayer> layers) =>
        layers.Select(l => new LayerShape(l.Name, l.Out, l.In)).ToArray();
}

/// <summary>Fitted factors for every tracked layer, with the manifest that says what they belong to.
/// Fit once (<see cref="FactorFitter"/>), save, then score many query sets.</summary>
public sealed class Factors : IDisposable
{
    public const string ManifestFile = "manifest.json", FactorsFile = "factors.safetensors";

    public Factors(FactorsManifest manifest, List<LayerFactors> layers) { Manifest = manifest; Layers = layers; }

    public FactorsManifest Manifest { get; }
    public List<LayerFactors> Layers { get; }
    public FactorStrategy Strategy => Manifest.Strategy;

    public void Save(string dir)
    {
        var all = new Dictionary<string, Tensor>();
        foreach (var l in Layers) foreach (var kv in l.ToTensors()) all[kv.Key] = kv.Value;
        // safetensors needs at least a valid header; identity factors hold no tensors.
        // The manifest, with the factors' checksum (and those of partials recorded earlier), is
        // written before the factors file is renamed into place: factors never appear unrecorded.
        string mpath = Path.Combine(dir, ManifestFile);
        SafeTensors.Save(Path.Combine(dir, FactorsFile), all, new Dictionary<string, string> { ["strategy"] = Manifest.Strategy.ToString() }, sum =>
        {
            var map = ManifestChecksums.Read(mpath) ?? new Dictionary<string, string>(StringComparer.Ordinal);
            map[FactorsFile] = sum;
            Json.WriteFile(mpath, Manifest with { Checksums = ManifestChecksums.SortedDictionary(map) });
        });
    }

    /// <summary>Loads factors; when <paramref name="expected"/> is given, refuses factors whose
    /// manifest differs (other checkpoint, architecture, data or settings).</summary>
    public static Factors Load(string dir, FactorsManifest? expected = null)
    {
        string mpath = Path.Combine(dir, ManifestFile), fpath = Path.Combine(dir, FactorsFile);
        if (!File.Exists(mpath)) throw new InfluenceSharpException($"{dir}: no {ManifestFile}: not a factors directory");
        if (!File.Exists(fpath)) throw new InfluenceSharpException($"{dir}: no {FactorsFile}: the fit has not finished (run fit-factors again to resume)");
        var manifest = Json.ReadFile<FactorsManifest>(mpath);
        if (expected is not null) manifest.Require(expected, mpath);
        using var file = SafeTensors.Load(fpath, ManifestChecksums.Expected(manifest.Checksums, FactorsFile, fpath, mpath), mpath);
        Tensor? Take(string key) => file.Tensors.Remove(key, out var t) ? t : null;
        var layers = manifest.Layers.Select(l =>
        {
            var lf = new LayerFactors(l.Name, manifest.Strategy, Take($"{l.Name}.qa"), Take($"{l.Name}.qs"),
                Take($"{l.Name}.eig_a"), Take($"{l.Name}.eig_s"), Take($"{l.Name}.lambda"));
            bool ok = manifest.Strategy switch
            {
                FactorStrategy.Identity => true,
                FactorStrategy.Diagonal => lf.Lambda is not null && lf.Lambda.shape.SequenceEqual(new[] { l.Out, l.In }),
                FactorStrategy.Kfac => lf.QA is not null && lf.QS is not null && lf.EigA is not null && lf.EigS is not null,
                _ => lf.QA is not null && lf.QS is not null && lf.Lambda is not null,
            };
            if (!ok || (lf.QA is not null && lf.QA.shape[0] != l.In) || (lf.QS is not null && lf.QS.shape[0] != l.Out))
                throw new InfluenceSharpException($"{fpath}: factors for layer '{l.Name}' are missing or have the wrong shape");
            return lf;
        }).ToList();
        return new Factors(manifest, layers);
    }

    public void Dispose() { foreach (var l in Layers) l.Dispose(); }
}
