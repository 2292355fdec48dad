namespace InfluenceSharp.Evaluation;

/// <summary>The one place where evaluation summarises repeated measurements (seeds, queries): mean,
/// sample standard deviation (n − 1) and standard error of the mean (that std / √n).</summary>
public static class Statistics
{
    /// <summary>Mean and sample standard deviation; <paramref name="single"/> as the std of one value.</summary>
    public static (double Mean, double Std) MeanStd(IReadOnlyList<double> v, double single = 0)
    {
        double mean = v.Average();
        return (mean, v.Count > 1 ? Math.Sqrt(SumOfSquares(v, mean) / (v.Count - 1)) : single);
    }

    /// <summary>Mean and standard error of the mean; NaN for no values, <paramref name="single"/> as
    /// the standard error of one value.</summary>
    public static (double Mean, double StandardError) MeanStandardError(IReadOnlyList<double> v, double single = 0)
    {
        double mean = v.Count > 0 ? v.Average() : double.NaN;
        return (mean, v.Count > 1 ? Math.Sqrt(SumOfSquares(v, mean) / (v.Count - 1) / v.Count) : v.Count == 0 ? double.NaN : single);
    }

    static double SumOfSquares(IReadOnlyList<double> v, double mean) => v.Sum(x => (x - mean) * (x - mean));
}
