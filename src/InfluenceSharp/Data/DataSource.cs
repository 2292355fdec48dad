namespace InfluenceSharp.Data;

/// <summary>A train/test pair of datasets and where it came from.</summary>
public sealed record DataSplit(LabeledDataset Train, LabeledDataset Test, string Source)
{
    /// <summary>How a reader standardised the features (csv:), null where it did not.</summary>
    public FeatureScaling? Scaling { get; init; }
}

/// <summary>x' = (x − Mean) / Std per feature column, with the training rows' statistics (population
/// standard deviation; 1 for a constant column). A trained run keeps it as standardisation.json, so
/// new rows can be prepared the same way outside InfluenceSharp.</summary>
public sealed record FeatureScaling(string[] Columns, double[] Mean, double[] Std)
{
    public const string FileName = "standardisation.json";
}

/// <summary>Finds the data a command should use: the embedded Fashion-MNIST subset (always
/// available, no download), the full Fashion-MNIST (Debian's dataset-fashion-mnist package or a
/// directory of IDX files), CIFAR-10 binary batches, or data a user has: a folder of images per
/// class (<see cref="ImageFolderReader"/>), tensors prepared in Python (<see cref="TensorFileReader"/>)
/// or a CSV table (<see cref="CsvDataReader"/>).</summary>
public static class DataSource
{
    public const string DebianFashionMnistDir = "/usr/share/datasets/fashion-mnist";
    public static readonly string[] FashionMnistClassNames =
        { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };

    /// <summary>The test fraction of a seeded split, for data that has no test part of its own.</summary>
    public const double DefaultTestFraction = 0.2;

    /// <summary>
    /// spec: "embedded" | "fashion-mnist" (full set at the Debian location) | "auto" (full set when
    /// present, else embedded) | "cifar10:DIR" | "imagefolder:DIR" | "tensors:FILE" | "csv:FILE" |
    /// a directory holding IDX files (MNIST layout) or CIFAR-10 binary batches (see <see cref="DataSpec"/>).
    /// The split's <see cref="DataSplit.Source"/> is the canonical spec, with absolute paths and the
    /// reader options that were used (given or resolved), so that it rebuilds the same data.
    /// </summary>
    /// <param name="spec">The --data spec.</param>
    /// <param name="options">Command-line reader options, folded into the spec.</param>
    /// <param name="progress">Progress of long reads (decoding an image folder).</param>
    public static DataSplit Load(string spec, DataOptions? options = null, IProgress<Diagnostics.ProgressUpdate>? progress = null)
    {
        var s = DataSpec.Parse(spec).With(options);
        if (s.Kind == DataKind.Embedded) return LoadEmbedded();
        if (s.Kind == DataKind.Auto) return Directory.Exists(DebianFashionMnistDir) ? LoadIdxDirectory(DebianFashionMnistDir) : LoadEmbedded();
        if (s.Kind == DataKind.FashionMnist)
        {
            if (!Directory.Exists(DebianFashionMnistDir))
                throw new InfluenceSharpException($"--data fashion-mnist: {DebianFashionMnistDir} not found (apt-get install dataset-fashion-mnist, or pass --data DIR)");
            return LoadIdxDirectory(DebianFashionMnistDir);
        }
        if (s.Reader is { } reader) return reader.Load(s, progress);
        if (!Directory.Exists(spec))
            throw new InfluenceSharpException($"--data {spec}: not 'embedded', 'auto', 'fashion-mnist', {string.Join(", ", DataReaders.All.Select(r => $"'{r.Usage}'"))} or an existing directory");
        if (File.Exists(Path.Combine(spec, "data_batch_1.bin")) || Directory.Exists(Path.Combine(spec, "cifar-10-batches-bin")))
        {
            var (tr, te) = Cifar10Reader.Load(spec);
            return new DataSplit(tr, te, Path.GetFullPath(spec));
        }
        return LoadIdxDirectory(spec);
    }

    /// <summary>A seeded split stratified by class: of each class's examples, round(fraction × n)
    /// (at most n − 1) chosen at random go to the test set. Both index lists ascend.</summary>
    public static (int[] Train, int[] Test) StratifiedSplit(int[] labels, int numClasses, double fraction, int seed)
    {
        var rng = new Random(seed);
        var train = new List<int>();
        var test = new List<int>();
        for (int c = 0; c < numClasses; c++)
        {
            var members = Enumerable.Range(0, labels.Length).Where(i => labels[i] == c).ToArray();
            for (int i = members.Length - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (members[i], members[j]) = (members[j], members[i]);
            }
            int k = Math.Min((int)Math.Round(fraction * members.Length, MidpointRounding.AwayFromZero), Math.Max(0, members.Length - 1));
            test.AddRange(members.Take(k));
            train.AddRange(members.Skip(k));
        }
        train.Sort(); test.Sort();
        return (train.ToArray(), test.ToArray());
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
        string trainImages = Path.GetFullPath(Find("train-images-idx3-ubyte")), testImages = Path.GetFullPath(Find("t10k-images-idx3-ubyte"));
        var train = IdxReader.ReadImagesAndLabels(trainImages, Find("train-labels-idx1-ubyte"), "fashion-mnist-train");
        var test = IdxReader.ReadImagesAndLabels(testImages, Find("t10k-labels-idx1-ubyte"), "fashion-mnist-test");
        return new DataSplit(train.WithClassNames(FashionMnistClassNames).WithSources(ExampleSource.Indices(trainImages, train.Count)),
            test.WithClassNames(FashionMnistClassNames).WithSources(ExampleSource.Indices(testImages, test.Count)), Path.GetFullPath(dir));
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
        return new DataSplit(train.WithClassNames(FashionMnistClassNames).WithSources(ExampleSource.Indices("embedded:train-images-idx3-ubyte.gz", train.Count)),
            test.WithClassNames(FashionMnistClassNames).WithSources(ExampleSource.Indices("embedded:t10k-images-idx3-ubyte.gz", test.Count)), "embedded");
    }

    /// <summary>A class-balanced subset: the first n/numClasses examples of each class in a seeded
    /// random order, returned in ascending index order.</summary>
    public static int[] BalancedSubset(LabeledDataset data, int n, int seed)
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
