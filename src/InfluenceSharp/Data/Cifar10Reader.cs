namespace InfluenceSharp.Data;

/// <summary>Reads the CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin): records of one
/// label byte followed by 3×32×32 pixel bytes (channel-major).</summary>
public static class Cifar10Reader
{
    public const int RecordSize = 1 + 3 * 32 * 32;
    public static readonly string[] ClassNames =
        { "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck" };

    /// <summary>Reads the batches' labels; the pixels stay in the files, read record by
    /// record (one record's label byte is skipped by the stride).</summary>
    public static ImageDataset ReadBatches(IEnumerable<string> paths, string name)
    {
        var stores = new List<PixelStore>();
        var labels = new List<int>();
        var sources = new List<ExampleSource>();
        foreach (var path in paths)
        {
            if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
            long length = new FileInfo(path).Length;
            if (length == 0)
                throw new InfluenceSharpException($"{path}: empty file (a CIFAR-10 binary batch holds records of {RecordSize} bytes: a label byte and 32x32x3 pixels)");
            if (length % RecordSize != 0)
                throw new InfluenceSharpException($"{path}: size {length} is not a multiple of the CIFAR-10 record size {RecordSize} (truncated or not a CIFAR-10 binary batch)");
            long n = length / RecordSize;
            using (var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan))
            {
                var block = new byte[RecordSize * 256];
                for (long i = 0; i < n;)
                {
                    int records = (int)Math.Min(256, n - i);
                    f.ReadExactly(block, 0, records * RecordSize);
                    for (int r = 0; r < records; r++, i++)
                    {
                        int label = block[r * RecordSize];
                        if (label >= 10) throw new InfluenceSharpException($"{path}: record {i} has label {label}, outside [0, 10)");
                        labels.Add(label);
                        sources.Add(ExampleSource.OfArray(Path.GetFullPath(path), (int)i));
                    }
                }
            }
            stores.Add(new FilePixelStore(path, 1, RecordSize, RecordSize - 1, n));
        }
        if (labels.Count == 0) throw new InfluenceSharpException($"no CIFAR-10 batch files given for {name}");
        var store = stores.Count == 1 ? stores[0] : new ConcatPixelStore(stores);
        return (ImageDataset)new ImageDataset(name, store, null, labels.ToArray(), 3, 32, 32, 10, ClassNames).WithSources(sources);
    }

    /// <summary>Loads train (data_batch_1..5.bin) and test (test_batch.bin) from a directory or its
    /// cifar-10-batches-bin subdirectory.</summary>
    public static (ImageDataset Train, ImageDataset Test) Load(string dir)
    {
        string d = Directory.Exists(Path.Combine(dir, "cifar-10-batches-bin")) ? Path.Combine(dir, "cifar-10-batches-bin") : dir;
        var train = Enumerable.Range(1, 5).Select(i => Path.Combine(d, $"data_batch_{i}.bin")).ToList();
        return (ReadBatches(train, "cifar10-train"), ReadBatches(new[] { Path.Combine(d, "test_batch.bin") }, "cifar10-test"));
    }

    /// <summary>Writes a dataset as one CIFAR-10 binary batch (for tests and subsets).</summary>
    public static void WriteBatch(string path, ImageDataset data)
    {
        if (data.Channels != 3 || data.Height != 32 || data.Width != 32)
            throw new ArgumentException("CIFAR-10 batches hold 3x32x32 images", nameof(data));
        var b = new byte[data.Count * RecordSize];
        for (int i = 0; i < data.Count; i++)
        {
            b[i * RecordSize] = (byte)data.Labels[i];
            data.ReadImage(i, b.AsSpan(i * RecordSize + 1, RecordSize - 1));
        }
        AtomicFile.WriteAllBytes(path, b);
    }
}

/// <summary>cifar10:DIR — CIFAR-10 binary batches (see <see cref="Cifar10Reader"/>).</summary>
public sealed class Cifar10DataReader : DataReader
{
    public override string Prefix => "cifar10";
    public override string Usage => "cifar10:DIR";
    public override int Order => 10;

    public override DataSplit Load(DataSpec spec, IProgress<Diagnostics.ProgressUpdate>? progress)
    {
        // Recorded with an absolute path, so commands run from another directory find the data.
        string dir = Path.GetFullPath(spec.Path!);
        var (tr, te) = Cifar10Reader.Load(dir);
        return new DataSplit(tr, te, "cifar10:" + dir);
    }
}
