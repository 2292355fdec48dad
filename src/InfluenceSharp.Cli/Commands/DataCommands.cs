using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence data subset`, `influence data info` and `influence data clean` (<see cref="CleanCommand"/>).</summary>
public static class DataCommands
{
    public static Command Command()
    {
        var cmd = new Command("data", "data sets: class-balanced IDX subsets, fingerprints, cleaned copies");
        cmd.Add(SubsetCommand());
        cmd.Add(InfoCommand());
        cmd.Add(CleanCommand.Command());
        return cmd;
    }

    static Command SubsetCommand()
    {
        var data = Opt.FreshData();
        var outDir = Opt.Out("where to write the gzip IDX files", required: true);
        var trainCount = Opt.Int("--train-count", "training examples in the subset", 10000, 1);
        var testCount = Opt.Int("--test-count", "test examples in the subset", 2000, 1);
        var seed = Opt.Int("--seed", "subset seed", 0, 0);
        var readers = new DataReaderOptions();
        var cmd = new Command("subset", "write a class-balanced subset of a single-channel data set as gzip IDX files (how data/ was made, from --data fashion-mnist)")
        {
            data, outDir, trainCount, testCount, seed,
        };
        readers.AddTo(cmd);
        cmd.SetAction(p => Subset(p.GetValue(data)!, readers.Read(p), p.GetValue(outDir)!, p.GetValue(trainCount), p.GetValue(testCount), p.GetValue(seed)));
        return cmd;
    }

    static int Subset(string dataSpec, DataOptions readerOptions, string outDir, int nTrain, int nTest, int seed)
    {
        var split = DataSource.Load(dataSpec, readerOptions);
        if (split.Train is not ImageDataset || split.Train.Channels != 1) throw new InfluenceSharpException("data subset writes IDX (single-channel uint8 image) data sets only");
        // Both counts are checked before anything is written.
        foreach (var (d, n, option) in new[] { (split.Train, nTrain, "--train-count"), (split.Test, nTest, "--test-count") })
        {
            if (n > d.Count) throw new UsageException($"{option} {n}: the data set has only {d.Count} {d.Name} examples");
            CheckBalancedCount(option, n, d);
        }
        void Write(LabeledDataset d, int n, string prefix)
        {
            var sub = ((ImageDataset)d).Subset(DataSource.BalancedSubset(d, n, seed));
            IdxReader.Write(Path.Combine(outDir, $"{prefix}-images-idx3-ubyte.gz"), new[] { sub.Count, sub.Height, sub.Width }, sub.Pixels);
            IdxReader.Write(Path.Combine(outDir, $"{prefix}-labels-idx1-ubyte.gz"), new[] { sub.Count }, sub.Labels.Select(l => (byte)l).ToArray());
            Console.WriteLine($"{prefix}: {sub.Count} examples, fingerprint {sub.Fingerprint()}");
        }
        Write(split.Train, nTrain, "train");
        Write(split.Test, nTest, "t10k");
        return 0;
    }

    /// <summary>A class-balanced subset of n has n / classes examples of each class: n must be at least
    /// the number of classes, and every class must have that many examples.</summary>
    internal static void CheckBalancedCount(string option, int n, LabeledDataset d)
    {
        if (n < d.NumClasses)
            throw new UsageException($"{option} {n}: a class-balanced subset needs at least one example per class, so at least {d.NumClasses} ({d.NumClasses} classes)");
        var counts = new int[d.NumClasses];
        foreach (var l in d.Labels) counts[l]++;
        int per = n / d.NumClasses, min = counts.Min();
        if (min < per)
            throw new UsageException($"{option} {n}: {per} examples per class needed but class {Array.IndexOf(counts, min)} has only {min} in {d.Name} (at most {min * d.NumClasses})");
    }

    static Command InfoCommand()
    {
        var data = Opt.FreshData();
        var readers = new DataReaderOptions();
        var cmd = new Command("info", "describe a data set: sizes, class counts, class names, fingerprints") { data };
        readers.AddTo(cmd);
        cmd.SetAction(p => Info(p.GetValue(data)!, readers.Read(p)));
        return cmd;
    }

    static int Info(string dataSpec, DataOptions readerOptions)
    {
        var split = DataSource.Load(dataSpec, readerOptions);
        foreach (var d in new[] { split.Train, split.Test })
        {
            var counts = new int[d.NumClasses];
            foreach (var l in d.Labels) counts[l]++;
            Console.WriteLine($"{d.Name}: {d.Count} x {d.Channels}x{d.Height}x{d.Width}, classes {string.Join(" ", counts)}, fingerprint {d.Fingerprint()}");
        }
        if (split.Train.ClassNames is { } names) Console.WriteLine($"classes: {string.Join(", ", names)}");
        Console.WriteLine($"source: {split.Source}");
        return 0;
    }
}
