using System.Globalization;
using System.Text.Json;
using InfluenceSharp.Data;
using InfluenceSharp.Tests.Data;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A run trained on csv: keeps the standardisation it used as numbers (standardisation.json):
/// the training rows' mean and population standard deviation per column, computed here from the file.</summary>
[Collection("cli")]
public class CsvScalingCliTests
{
    [Fact]
    public void TrainRecordsTheTrainingRowsStatisticsAndTheyReproduceTheInputs()
    {
        using var dir = new TempDir();
        string csv = dir.File("people.csv"), holdout = dir.File("holdout.csv");
        UserDataFiles.Csv(csv, 60, TestSeed.Random(), labelName: "buys");
        UserDataFiles.Csv(holdout, 15, new Random(TestSeed.For() + 7), labelName: "buys");
        var r = CliRunner.Run("train", "--data", "csv:" + csv, "--label-column", "buys", "--test-data", holdout, "--model", "logreg",
            "--epochs", "1", "--out", dir.File("run"), "--quiet");
        Assert.True(r.Code == 0, r.Err);

        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir.File("run"), FeatureScaling.FileName)));
        var root = doc.RootElement;
        JsonElement Prop(string name) => root.EnumerateObject().First(p => string.Equals(p.Name, name, StringComparison.OrdinalIgnoreCase)).Value;
        Assert.Equal(new[] { "age", "income" }, Prop("columns").EnumerateArray().Select(e => e.GetString()));
        var mean = Prop("mean").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var std = Prop("std").EnumerateArray().Select(e => e.GetDouble()).ToArray();

        // Oracle: the file's training rows, by hand in float64.
        var rows = File.ReadAllLines(csv).Skip(1).Select(l => l.Split(',')).ToList();
        for (int c = 0; c < 2; c++)
        {
            var v = rows.Select(f => double.Parse(f[c], CultureInfo.InvariantCulture)).ToArray();
            double m = v.Average(), s = Math.Sqrt(v.Select(t => (t - m) * (t - m)).Average());
            Assert.Equal(m, mean[c], 4);
            Assert.Equal(s, std[c], 4);
        }
        // Applying the recorded numbers to the raw rows gives exactly the inputs the run was trained on.
        var data = RunData.For(Checkpoint.List(dir.File("run"))[^1], null);
        using var x = data.Train.Inputs(Enumerable.Range(0, data.Train.Count).ToArray());
        var got = x.data<float>().ToArray();
        for (int i = 0; i < rows.Count; i++)
            for (int c = 0; c < 2; c++)
                Assert.Equal((double.Parse(rows[i][c], CultureInfo.InvariantCulture) - mean[c]) / std[c], got[i * 2 + c], 4);

        // Image data has no such record.
        r = CliRunner.Run("train", "--data", "embedded", "--model", "logreg", "--train-count", "100", "--epochs", "1", "--out", dir.File("img"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.False(File.Exists(Path.Combine(dir.File("img"), FeatureScaling.FileName)));
    }
}
