using System.Globalization;

namespace InfluenceSharp.Reporting;

/// <summary>"Nice" axis ticks (steps of 1, 2 or 5 times a power of ten) and their labels.</summary>
internal static class Ticks
{
    /// <summary>Tick values inside [lo, hi], about <paramref name="target"/> of them, and the step.</summary>
    public static (double[] Values, double Step) Nice(double lo, double hi, int target = 6)
    {
        // Rounding the step can leave too few ticks on a short axis; ask for more until there are 3.
        var r = NiceOnce(lo, hi, target);
        for (int t = target + 1; r.Values.Length < 3 && t <= target + 4; t++) r = NiceOnce(lo, hi, t);
        return r;
    }

    private static (double[] Values, double Step) NiceOnce(double lo, double hi, int target)
    {
        if (!(hi > lo)) return ([lo], 1);
        double raw = (hi - lo) / Math.Max(1, target - 1);
        double mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        double f = raw / mag;
        // The candidate closest to the raw step on a log scale, so the count stays near the target.
        double step = new[] { 1, 2, 2.5, 5, 10 }.MinBy(m => Math.Abs(Math.Log(m / f))) * mag;
        var values = new List<double>();
        double eps = step * 1e-9;
        for (double k = Math.Ceiling((lo - eps) / step); k * step <= hi + eps; k++)
        {
            double v = k * step;
            values.Add(Math.Abs(v) < eps ? 0 : v);   // no "-0"
        }
        return (values.ToArray(), step);
    }

    /// <summary>Labels for the ticks of one axis, all with the decimals the step needs. When the
    /// largest magnitude is very large or very small, all share its power of ten ("0.5e-5", "1.0e-5").</summary>
    public static string[] Labels(IReadOnlyList<double> values, double step)
    {
        double maxAbs = values.Count == 0 ? 0 : values.Max(Math.Abs);
        int exp = maxAbs > 0 ? (int)Math.Floor(Math.Log10(maxAbs)) : 0;
        bool sci = exp >= 5 || exp <= -4;
        double unit = sci ? Math.Pow(10, exp) : 1;
        double s = step / unit;
        int d = Math.Clamp(-(int)Math.Floor(Math.Log10(s) + 1e-9), 0, 10);
        // A step of 2.5 x 10^k needs one more decimal than its power of ten suggests.
        double scaled = s * Math.Pow(10, d);
        if (Math.Abs(scaled - Math.Round(scaled)) > 1e-6) d++;
        string suffix = sci ? "e" + exp.ToString(CultureInfo.InvariantCulture) : "";
        return values.Select(v => v == 0 && sci ? "0" : (v / unit).ToString("F" + d, CultureInfo.InvariantCulture) + suffix).ToArray();
    }

    /// <summary>A data range widened by a fraction of its span on each side; a single value gets a
    /// unit-sized range around it.</summary>
    public static (double Lo, double Hi) Pad(double lo, double hi, double frac)
    {
        if (double.IsInfinity(lo) || double.IsInfinity(hi) || double.IsNaN(lo) || double.IsNaN(hi)) return (0, 1);
        if (hi <= lo)
        {
            double d = lo == 0 ? 1 : Math.Abs(lo) * 0.1;
            return (lo - d, hi + d);
        }
        double p = (hi - lo) * frac;
        return (lo - p, hi + p);
    }
}
