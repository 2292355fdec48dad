using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A data reader defined only here, in the test assembly: blobs:N?shift=S is N points of two
/// classes around ±S in two dimensions (and N/4 test points), made without any file.</summary>
public sealed class ThrowawayDataReader : DataReader
{
    public override string Prefix => "blobs";
    public override string Usage => "blobs:N";
    public override IReadOnlyList<string> Keys => new[] { "shift" };

    public override void Validate(DataSpec spec, string text)
    {
        if (!int.TryParse(spec.Path, NumberStyles.None, CultureInfo.InvariantCulture, out int n) || n < 8)
            throw new InfluenceSharpException($"--data {text}: N must be an integer of at least 8");
    }

    public override DataSplit Load(DataSpec spec, IProgress<ProgressUpdate>? progress)
    {
        int n = int.Parse(spec.Path!, CultureInfo.InvariantCulture);
        float shift = spec["shift"] is { } s ? float.Parse(s, CultureInfo.InvariantCulture) : 2f;
        FloatDataset Make(string name, int count, int salt)
        {
            var x = new float[count * 2];
            var y = new int[count];
            for (int i = 0; i < count; i++)
            {
                y[i] = i % 2;
                float c = y[i] == 1 ? shift : -shift;
                x[2 * i] = c + ((i * 37 + salt) % 17) / 17f - 0.5f;
                x[2 * i + 1] = c + ((i * 53 + salt) % 13) / 13f - 0.5f;
            }
            return new FloatDataset(name, x, new[] { 2 }, y, 2);
        }
        return new DataSplit(Make("blobs-train", n, 0), Make("blobs-test", n / 4, 7), spec.ToString());
    }
}

/// <summary>Data readers come from the library's registry: the command line reads, records and
/// rebuilds whatever kind of data is registered.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class DataReaderRegistryTests
{
    [Fact]
    public void AReaderRegisteredFromAnotherAssemblyWorksThroughTheCommandLine()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        Assert.NotEqual(0, CliRunner.Run("train", "--data", "blobs:80", "--model", "logreg", "--out", dir.File("none")).Code);
        using (DataReaders.Register(new ThrowawayDataReader()))
        {
            Assert.Contains("blobs:N", CliRunner.Run("train", "--help").Out);
            var r = CliRunner.Run("train", "--data", "blobs:80?shift=3", "--model", "logreg", "--epochs", "2", "--out", run, "--quiet");
            Assert.True(r.Code == 0, r.Err);
            // A later command rebuilds the run's data through the reader, from the recorded spec.
            var opened = Run.Open(run);
            Assert.Equal("blobs:80?shift=3", opened.Data.Source);
            Assert.Equal(80, opened.Data.Train.Count);
            r = CliRunner.Run("scores", "self", "--run", run, "--methods", "ekfac", "--out", dir.File("self"), "--quiet");
            Assert.True(r.Code == 0, r.Err);
            Assert.True(File.Exists(Path.Combine(dir.File("self"), "self_influence.npy")));

            r = CliRunner.Run("train", "--data", "blobs:80?bogus=1", "--model", "logreg", "--out", dir.File("x"));
            Assert.NotEqual(0, r.Code);
            Assert.Contains("unknown option 'bogus' for blobs data (known: shift)", r.Err);
            r = CliRunner.Run("train", "--data", "blobs:3", "--model", "logreg", "--out", dir.File("x"));
            Assert.NotEqual(0, r.Code);
            Assert.Contains("N must be an integer of at least 8", r.Err);
        }
        Assert.DoesNotContain("blobs:N", CliRunner.Run("train", "--help").Out);
    }
}
