using InfluenceSharp.Data;

namespace InfluenceSharp.Cli.Commands;

public static class DataCommands
{
    /// <summary>`influence data subset`: how the embedded default set under data/ was made.</summary>
    public static int Subset(Args a)
    {
        if (a.Flag("help"))
        {
            Console.WriteLine("influence data subset --data SPEC --out DIR [--train 10000] [--test 2000] [--seed 0]\n  writes a class-balanced subset as gzip IDX files");
            return 0;
        }
        var split = DataSource.Load(a.Str("data", "fashion-mnist"));
        string outDir = a.Required("out");
        int nTrain = a.Int("train", 10000), nTest = a.Int("test", 2000), seed = a.Int("seed", 0);
        a.RejectUnknown();
        if (split.Train.Channels != 1) throw new UsageException("data subset writes IDX (single-channel) data sets only");
        void Write(ImageDataset d, int n, string prefix)
        {
            var sub = d.Subset(DataSource.BalancedSubset(d, n, seed));
            IdxReader.Write(Path.Combine(outDir, $"{prefix}-images-idx3-ubyte.gz"), new[] { sub.Count, sub.Height, sub.Width }, sub.Pixels);
            IdxReader.Write(Path.Combine(outDir, $"{prefix}-labels-idx1-ubyte.gz"), new[] { sub.Count }, sub.Labels.Select(l => (byte)l).ToArray());
            Console.WriteLine($"{prefix}: {sub.Count} examples, fingerprint {sub.Fingerprint()}");
        }
        Write(split.Train, nTrain, "train");
        Write(split.Test, nTest, "t10k");
        return 0;
    }

    public static int Info(Args a)
    {
        var split = DataSource.Load(a.Str("data", "auto"));
        a.RejectUnknown();
        foreach (var d in new[] { split.Train, split.Test })
        {
            var counts = new int[d.NumClasses];
            foreach (var l in d.Labels) counts[l]++;
            Console.WriteLine($"{d.Name}: {d.Count} x {d.Channels}x{d.Height}x{d.Width}, classes {string.Join(" ", counts)}, fingerprint {d.Fingerprint()}");
        }
        Console.WriteLine($"source: {split.Source}");
        return 0;
    }
}
