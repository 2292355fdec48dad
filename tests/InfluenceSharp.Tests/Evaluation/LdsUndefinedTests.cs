using InfluenceSharp.Evaluation;
using TorchSharp;

namespace InfluenceSharp.Tests.Evaluation;

/// <summary>A query whose LDS correlation is undefined (constant predictions or targets over the
/// subsets) counts as 0 in the mean: it is reported, never silently dropped.</summary>
public class LdsUndefinedTests
{
    [Fact]
    public void UndefinedQueriesCountAsZeroAndAreReported()
    {
        // 3 queries, 4 training examples, 4 subsets. Query 0: scores equal the true linear model (LDS 1).
        // Query 1: all-zero scores, so every prediction is 0: undefined. Query 2: constant targets: undefined.
        var masks = new[]
        {
            new[] { true, true, false, false }, new[] { false, true, true, false },
            new[] { true, false, true, true }, new[] { false, false, false, true },
        };
        double[] w0 = { 0.5, -1, 2, 0.25 };
        var targets = new double[4, 3];
        for (int j = 0; j < 4; j++)
        {
            for (int i = 0; i < 4; i++) if (masks[j][i]) targets[j, 0] += w0[i];
            targets[j, 1] = j * 0.3 - (j == 2 ? 1 : 0);
            targets[j, 2] = 1.5;
        }
        using var scores = torch.tensor(new double[] { 0.5, -1, 2, 0.25, 0, 0, 0, 0, 1, 2, 3, 4 }, new long[] { 3, 4 });
        var r = Lds.Score(scores, masks, targets);
        Assert.Equal(1, r.PerQuery[0], 12);
        Assert.True(double.IsNaN(r.PerQuery[1]));
        Assert.True(double.IsNaN(r.PerQuery[2]));
        Assert.Equal(2, r.UndefinedQueries);
        Assert.Equal(1.0 / 3, r.Mean, 12);                       // (1 + 0 + 0) / 3, not 1 / 1
        // Sample std of {1, 0, 0} is 1/√3; divided by √3 that is 1/3.
        Assert.Equal(1.0 / 3, r.StandardError, 12);

        // All defined: the plain mean.
        using var good = torch.tensor(new double[] { 0.5, -1, 2, 0.25 }, new long[] { 1, 4 });
        var t1 = new double[4, 1];
        for (int j = 0; j < 4; j++) t1[j, 0] = targets[j, 0];
        var r1 = Lds.Score(good, masks, t1);
        Assert.Equal(0, r1.UndefinedQueries);
        Assert.Equal(1, r1.Mean, 12);
    }
}
