using System.Globalization;

namespace InfluenceSharp.Data;

/// <summary>
/// "Tinted Fashion-MNIST", a spurious-correlation benchmark made from real images (after D3M):
/// each grey image becomes RGB, tinted red (tint 0: R, G, B = p, p/4, p/4) or green (tint 1:
/// p/4, p, p/4). Class c's majority tint is c mod 2. In the training set an image gets its class's
/// majority tint with probability <c>agree</c> (default 0.95), else the other; in the test set the
/// tints are balanced: within each class, a seeded half of the images get each tint. Groups are
/// class × tint (2 × classes groups, id = 2·class + tint); the minority groups (tint ≠ class mod 2)
/// are rare in training, so a model that leans on the tint does worst on them.
///
/// Spec: <c>tinted</c> (= <c>tinted:embedded</c>, no download) or <c>tinted:BASE</c> with BASE
/// <c>embedded</c> | <c>fashion-mnist</c> | <c>auto</c> | a directory of IDX files, and options
/// <c>?agree=0.95&amp;seed=0</c>. Seeded and deterministic; the data sets' fingerprints cover the tinted
/// pixels. The tint of an image is read back from its pixels (the larger of its red and green sums),
/// so it survives subsets, label corruption and the run record (see <see cref="Tints"/>).
/// </summary>
public static class TintedData
{
    public const double DefaultAgree = 0.95;
    public const int TintCount = 2;

    internal static void Validate(DataSpec s, string spec)
    {
        if (s.Path is not ("embedded" or "fashion-mnist" or "auto") && s.Path is { } p && !Directory.Exists(p))
            throw new InfluenceSharpException($"--data {spec}: the base '{p}' is not embedded, fashion-mnist, auto or a directory of IDX files");
        if (s["agree"] is { } a && (!double.TryParse(a, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !(v >= 0 && v <= 1)))
            throw new InfluenceSharpException($"--data {spec}: agree={a}: a fraction between 0 and 1");
        if (s["seed"] is { } sd && !int.TryParse(sd, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            throw new InfluenceSharpException($"--data {spec}: seed={sd}: a non-negative integer");
    }

    /// <summary>Loads the base data and tints it (see the class summary).</summary>
    public static DataSplit Load(DataSpec spec)
    {
        double agree = spec["agree"] is { } a ? double.Parse(a, CultureInfo.InvariantCulture) : DefaultAgree;
        int seed = spec["seed"] is { } sd ? int.Parse(sd, CultureInfo.InvariantCulture) : 0;
        string basePath = spec.Path!;
        var baseSplit = DataSource.Load(basePath);
        if (baseSplit.Train is not ImageDataset tr || baseSplit.Test is not ImageDataset te || tr.Channels != 1 || te.Channels != 1)
            throw new InfluenceSharpException($"--data {spec}: tinting needs grey images (IDX data); {baseSplit.Source} is not");
        // Derived streams: Random(seed) itself is what --train-count's balanced subset draws its order
        // from, and the same stream would pick exactly the majority-tint images.
        var rng = new Random(Seeds.Derive(seed, 0x7117));
        var trainTint = new int[tr.Count];
        for (int i = 0; i < tr.Count; i++)
        {
            int major = tr.Labels[i] % TintCount;
            trainTint[i] = rng.NextDouble() < agree ? major : 1 - major;
        }
        var testTint = BalancedTints(te.Labels, te.NumClasses, new Random(Seeds.Derive(seed, 0x7118)));
        string canonicalBase = basePath is "embedded" or "fashion-mnist" or "auto" ? basePath : Path.GetFullPath(basePath);
        var canonical = new DataSpec(DataKind.Tinted, canonicalBase, new Dictionary<string, string>
        {
            ["agree"] = agree.ToString("R", CultureInfo.InvariantCulture), ["seed"] = seed.ToString(CultureInfo.InvariantCulture),
        });
        return new DataSplit(Tint(tr, trainTint, "tinted-train"), Tint(te, testTint, "tinted-test"), canonical.ToString());
    }

    /// <summary>Within each class, a seeded half of the examples (rounded down) get tint 1, the rest tint 0.</summary>
    static int[] BalancedTints(int[] labels, int numClasses, Random rng)
    {
        var tints = new int[labels.Length];
        for (int c = 0; c < numClasses; c++)
        {
            var members = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
            for (int i = members.Length - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (members[i], members[j]) = (members[j], members[i]);
            }
            for (int t = 0; t < members.Length; t++) tints[members[t]] = t < members.Length / 2 ? 1 : 0;
        }
        return tints;
    }

    static ImageDataset Tint(ImageDataset grey, int[] tints, string name)
    {
        int hw = grey.Height * grey.Width;
        var px = new byte[grey.Count * 3 * hw];
        var greyPixels = grey.Pixels;
        for (int i = 0; i < grey.Count; i++)
        {
            int src = i * hw, dst = i * 3 * hw;
            int strong = tints[i] == 0 ? 0 : 1;   // channel at full intensity: R for tint 0, G for tint 1
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < hw; p++)
                {
                    byte v = greyPixels[src + p];
                    px[dst + c * hw + p] = c == strong ? v : (byte)(v / 4);
                }
        }
        return (ImageDataset)new ImageDataset(name, px, grey.Labels, 3, grey.Height, grey.Width, grey.NumClasses, grey.ClassNames).WithSources(grey.Sources);
    }

    /// <summary>The tint of every image of a tinted data set, read from its pixels: 1 when its green sum
    /// exceeds its red sum, else 0. Throws when the data are not RGB images.</summary>
    public static int[] Tints(LabeledDataset data)
    {
        if (data is not ImageDataset img || img.Channels != 3)
            throw new InfluenceSharpException($"{data.Name}: the tint column needs RGB images (tinted data)");
        int hw = img.Height * img.Width;
        var tints = new int[img.Count];
        var image = new byte[3 * hw];
        for (int i = 0; i < img.Count; i++)
        {
            long r = 0, g = 0;
            img.ReadImage(i, image);
            for (int p = 0; p < hw; p++) { r += image[p]; g += image[hw + p]; }
            tints[i] = g > r ? 1 : 0;
        }
        return tints;
    }
}

/// <summary>tinted[:BASE] — Fashion-MNIST with a spurious tint (see <see cref="TintedData"/>).</summary>
public sealed class TintedDataReader : DataReader
{
    public override string Prefix => "tinted";
    public override string Usage => "tinted[:BASE]";
    public override int Order => 50;
    public override IReadOnlyList<string> Keys => new[] { "agree", "seed" };
    public override void Validate(DataSpec spec, string text) => TintedData.Validate(spec, text);
    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress) => TintedData.Load(spec);
}
