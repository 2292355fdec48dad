namespace InfluenceSharp.Data;

/// <summary>A train/test pair of datasets and where it came from.</summary>
public sealed record DataSplit(ImageDataset Train, ImageDataset Test, string Source);

/// <summary>Finds the data a command should use: the embedded Fashion-MNIST subset (always
/// available, no download), the full Fashion-MNIST (Debian's dataset-fashion-mnist package or a
/// directory of IDX files), or CIFAR-10 binary batches.</summary>
public static class DataSource
{
    public const string DebianFashionMnistDir = "/usr/share/datasets/fashion-mnist";
    public static readonly string[] FashionMnistClassNames =
        { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };

    /// <summary>
    /// spec: "embedded" | "fashion-mnist" (full set at the Debian location) | "auto" (full set when
    /// present, else embedded) | "cifar10:DIR" | a directory holding IDX files (MNIST layout) or
    /// CIFAR-10 binary batches.
    /// </summary>
    public static DataSplit Load(string spec)
    {
        switch (spec)
        {
            case "embedded": return LoadEmbedded();
            case "auto": return Directory.Exists(DebianFashionMnistDir) ? LoadIdxDirectory(DebianFashionMnistDir) : LoadEmbedded();
            case "fashion-mnist":
                if (!Directory.Exists(DebianFashionMnistDir))
                    throw new InfluenceSharpException($"--data fashion-mnist: {DebianFashionMnistDir} not found (apt-get install dataset-fashion-mnist, or pass --data DIR)");
                return LoadIdxDirectory(DebianFashionMnistDir);
        }
        if (spec.StartsWith("cifar10:", StringComparison.Ordinal))
        {
            // Recorded with an absolute path, so commands run from another directory find the data.
            string dir = Path.GetFullPath(spec["cifar10:".Length..]);
            var (tr, te) = Cifar10Reader.Load(dir);
            return new DataSplit(tr, te, "cifar10:" + dir);
        }
        if (!Directory.Exists(spec))
            throw new InfluenceSharpException($"--data {spec}: not 'embedded', 'auto', 'fashion-mnist', 'cifar10:DIR' or an existing directory");
        if (File.Exists(Path.Combine(spec, "data_batch_1.bin")) || Directory.Exists(Path.Combine(spec, "cifar-10-batches-bin")))
        {
            var (tr, te) = Cifar10Reader.Load(spec);
            return new DataSplit(tr, te, Path.GetFullPath(spec));
        }
        return LoadIdxDirectory(spec);
    }

    public static DataSplit LoadIdxDirectory(string dir)
    {
        string Find(string stem)
        {
            foreach (var name in new[] { stem + ".gz", stem, stem.Replace("-idx", ".idx") + ".gz", stem.Replace("-idx", ".idx") })
            {
                var p = Path.Combine(dir, name);
                if (File.Exists(p)) return p;
            }
            throw new InfluenceSharpException($"{dir}: no {stem}[.gz] found (expected MNIST-layout IDX files)");
        }
        var train = IdxReader.ReadImagesAndLabels(Find("train-images-idx3-ubyte"), Find("train-labels-idx1-ubyte"), "fashion-mnist-train");
        var test = IdxReader.ReadImagesAndLabels(Find("t10k-images-idx3-ubyte"), Find("t10k-labels-idx1-ubyte"), "fashion-mnist-test");
        return new DataSplit(train, test, Path.GetFullPath(dir));
    }

    /// <summary>The class-balanced Fashion-MNIST subset embedded in the library (10,000 train /
    /// 2,000 test), made by `influence data subset` from Debian's dataset-fashion-mnist.</summary>
    public static DataSplit LoadEmbedded()
    {
        IdxArray Res(string file, int rank)
        {
            var asm = typeof(DataSource).Assembly;
            using var s = asm.GetManifestResourceStream("InfluenceSharp.data." + file)
                ?? throw new InvalidOperationException($"embedded resource {file} missing from the build");
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            return IdxReader.Parse(ms.ToArray(), "embedded:" + file, rank);
        }
        var train = IdxReader.ToDataset(Res("train-images-idx3-ubyte.gz", 3), "embedded:train-images", Res("train-labels-idx1-ubyte.gz", 1), "embedded:train-labels", "fashion-mnist-subset-train");
        var test = IdxReader.ToDataset(Res("t10k-images-idx3-ubyte.gz", 3), "embedded:t10k-images", Res("t10k-labels-idx1-ubyte.gz", 1), "embedded:t10k-labels", "fashion-mnist-subset-test");
        return new DataSplit(train, test, "embedded");
    }

    /// <summary>A class-balanced subset: the first n/numClasses examples of each class in a seeded
    /// random order, returned in ascending index order.</summary>
    public static int[] BalancedSubset(ImageDataset data, int n, int seed)
    {
        if (n < data.NumClasses)
            throw new InfluenceSharpException($"{data.Name}: a class-balanced subset of {n} needs at least one example per class, so at least {data.NumClasses}");
        int per = n / data.NumClasses;
        var rng = new Random(seed);
        var order = Enumerable.Range(0, data.Count).OrderBy(_ => rng.Next()).ToArray();
        var taken = new int[data.NumClasses];
        var result = new List<int>(n);
        foreach (var i in order)
        {
            int c = data.Labels[i];
            if (taken[c] < per) { taken[c]++; result.Add(i); }
        }
        if (result.Count < per * data.NumClasses)
            throw new InfluenceSharpException($"{data.Name}: not enough examples for a balanced subset of {n}");
        result.Sort();
        return result.ToArray();
    }
}
