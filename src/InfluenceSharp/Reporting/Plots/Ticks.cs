using System.Globalization;

namespace InfluenceSharp.Reporting;

/// <summary>"Nice" axis ticks (steps of 1, 2 or 5 times a power of ten) and their labels.</summary>
internal static class Ticks
{
    /// <summary>Tick values inside [lo, hi], about <paramref name="target"/> of them, and the step.</summary>
    public static (double[] Values, double Step) Nice(double lo, double hi, int target = 6)
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

    /// <summary>A tick label with as many decimals as the step needs; very large or very small
    /// magnitudes in short scientific form ("2.5e-05").</summary>
    public static string Format(double v, double step)
    {
        double mag = Math.Max(Math.Abs(v), step);
        int exp = (int)Math.Floor(Math.Log10(mag));
        if (exp >= 5 || exp <= -4)
        {
            if (v == 0) return "0";
            int decimals = Math.Clamp(exp - (int)Math.Floor(Math.Log10(step) + 1e-9), 0, 4);
            double mant = v / Math.Pow(10, exp);
            return mant.ToString("F" + decimals, CultureInfo.InvariantCulture) + "e" + exp.ToString(CultureInfo.InvariantCulture);
        }
        int d = Math.Clamp(-(int)Math.Floor(Math.Log10(step) + 1e-9), 0, 10);
        // A step of 2.5 x 10^k needs one more decimal than its power of ten suggests.
        double scaled = step * Math.Pow(10, d);
        if (Math.Abs(scaled - Math.Round(scaled)) > 1e-6) d++;
        return v.ToString("F" + d, CultureInfo.InvariantCulture);
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
