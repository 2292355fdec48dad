using System.Diagnostics;
using InfluenceSharp.Data;

namespace InfluenceSharp.Bench;

/// <summary>One measured stage. Gflop is the work the stage must do (counted by hand per stage).</summary>
public sealed record BenchResult(string Case, string Stage, long Examples, double Seconds, double Gflop, double PeakRssMiB, string Note = "")
{
    public double GflopPerSec => Gflop > 0 ? Gflop / Seconds : 0;
}

public sealed class BenchContext
{
    public BenchContext(int n) { N = n; }
    public int N { get; }
    private DataSplit? data;

    /// <summary>Full Fashion-MNIST when installed (Debian's dataset-fashion-mnist), else the embedded
    /// subset tiled to N examples (same shapes and cost; noted in the output).</summary>
    public (ImageDataset Train, ImageDataset Test, string Source) Data(int count)
    {
        data ??= Directory.Exists(DataSource.DebianFashionMnistDir) ? DataSource.Load("fashion-mnist") : DataSource.LoadEmbedded();
        var train = data.Train;
        var idx = Enumerable.Range(0, count).Select(i => i % train.Count).ToArray();
        return ((ImageDataset)(count == train.Count ? train : train.Subset(idx)), (ImageDataset)data.Test, data.Source + (count > train.Count ? " (tiled)" : ""));
    }
}

public static class Measure
{
    public static double PeakRssMiB() => ReadStatusKb("VmHWM") / 1024.0;
    public static double RssMiB() => ReadStatusKb("VmRSS") / 1024.0;

    static double ReadStatusKb(string key)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(key + ":", StringComparison.Ordinal))
                return double.Parse(line[(key.Length + 1)..].Trim().Split(' ')[0]);
        return double.NaN;
    }

    public static double Seconds(Action a)
    {
        var sw = Stopwatch.StartNew();
        a();
        return sw.Elapsed.TotalSeconds;
    }
}
