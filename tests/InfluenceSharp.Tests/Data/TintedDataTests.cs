using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;

namespace InfluenceSharp.Tests.Data;

public class TintedDataTests
{
    [Fact]
    public void TintedEmbeddedDataIsSeededSpuriousAndGrouped()
    {
        var s = DataSource.Load("tinted");
        Assert.Equal("tinted:embedded?agree=0.95&seed=0", s.Source);
        Assert.Equal(3, s.Train.Channels);
        Assert.Equal(10000, s.Train.Count);
        // Reloading the recorded spec gives the same data; another seed other tints.
        var again = DataSource.Load(s.Source);
        Assert.Equal(s.Train.Fingerprint(), again.Train.Fingerprint());
        Assert.NotEqual(s.Train.Fingerprint(), DataSource.Load("tinted:embedded?seed=1").Train.Fingerprint());

        var trainTint = TintedData.Tints(s.Train);
        double agree = Enumerable.Range(0, s.Train.Count).Count(i => trainTint[i] == s.Train.Labels[i] % 2) / (double)s.Train.Count;
        Assert.InRange(agree, 0.93, 0.97);
        // A class-balanced subset (train --train-count, seed 0) keeps the minority tints too.
        var sub = s.Train.Subset(DataSource.BalancedSubset(s.Train, 1000, 0));
        var subTint = TintedData.Tints(sub);
        Assert.InRange(Enumerable.Range(0, 1000).Count(i => subTint[i] != sub.Labels[i] % 2), 25, 80);
        // Test tints are balanced within each class (half each, rounded down for tint 1).
        var testTint = TintedData.Tints(s.Test);
        for (int c = 0; c < 10; c++)
        {
            var members = Enumerable.Range(0, s.Test.Count).Where(i => s.Test.Labels[i] == c).ToArray();
            Assert.Equal(members.Length / 2, members.Count(i => testTint[i] == 1));
        }
        // Groups class*tint: id = 2·class + tint, 20 groups, named.
        var g = GroupLabels.Resolve("class*tint", s.Train, s.Test);
        Assert.Equal(20, g.NumGroups);
        Assert.Equal("Trouser/green", g.Names[3]);
        for (int i = 0; i < 50; i++) Assert.Equal(2 * s.Test.Labels[i] + testTint[i], g.Test[i]);
        Assert.Equal(20, g.Train!.Distinct().Count());
    }

    [Fact]
    public void BadTintedSpecsAndGroupColumnsAreClearErrors()
    {
        var e = Assert.Throws<InfluenceSharpException>(() => DataSpec.Parse("tinted:embedded?agree=2"));
        Assert.Contains("agree=2", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => DataSpec.Parse("tinted:/no/such/dir"));
        Assert.Contains("/no/such/dir", e.Message);
        var grey = Embedded.Split;
        e = Assert.Throws<InfluenceSharpException>(() => GroupLabels.Resolve("colour", grey.Train, grey.Test));
        Assert.Contains("'colour' is not a group column", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => GroupLabels.Resolve("class*tint", grey.Train, grey.Test));
        Assert.Contains("RGB", e.Message);
        using var dir = new TempDir();
        File.WriteAllText(dir.File("g.txt"), "0\n1\n");
        e = Assert.Throws<InfluenceSharpException>(() => GroupLabels.Resolve(dir.File("g.txt"), grey.Train, grey.Test));
        Assert.Contains("2 group ids", e.Message);
        Assert.Contains($"give {grey.Test.Count}", e.Message);
    }
}
