using InfluenceSharp.Evaluation;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>The one mean ± s.e. helper that curation, removal and the LDS report with.</summary>
public class StatisticsTests
{
    [Fact]
    public void MeanStdAndStandardErrorMatchTheTextbookFormulas()
    {
        var v = new[] { 0.3, -1.2, 2.5, 0.9 };
        double mean = 0.625, ss = 0.105625 + 3.330625 + 3.515625 + 0.075625;
        var (m1, std) = Statistics.MeanStd(v);
        var (m2, se) = Statistics.MeanStandardError(v);
        Assert.Equal(mean, m1, 12);
        Assert.Equal(mean, m2, 12);
        Assert.Equal(Math.Sqrt(ss / 3), std, 12);
        Assert.Equal(Math.Sqrt(ss / 3) / 2, se, 12);
        // The same numbers through the records that print them.
        Assert.Equal(se, MeanSe.Of(v.Append(double.NaN).ToArray()).StandardError, 12);
        Assert.Equal(std, MeanStd.Of(v).Std, 12);
    }

    [Fact]
    public void OneValueAndNoValues()
    {
        Assert.Equal((2.0, 0.0), Statistics.MeanStd(new[] { 2.0 }));
        Assert.Equal((2.0, 0.0), Statistics.MeanStandardError(new[] { 2.0 }));
        var (m, se) = Statistics.MeanStandardError(new[] { 2.0 }, single: double.NaN);
        Assert.Equal(2.0, m);
        Assert.True(double.IsNaN(se));
        var (m0, se0) = Statistics.MeanStandardError(Array.Empty<double>());
        Assert.True(double.IsNaN(m0) && double.IsNaN(se0));
    }
}
