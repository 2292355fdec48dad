namespace InfluenceSharp.Tests;

/// <summary>Seeds for randomised tests. Fixed by default, so a failure reproduces on every run;
/// set INFLUENCESHARP_TEST_SEED=N to explore other draws (each test mixes N with its own name, so
/// tests stay independent). A test that fails should put <see cref="Describe"/> in its message.</summary>
public static class TestSeed
{
    public const string Variable = "INFLUENCESHARP_TEST_SEED";

    /// <summary>The base seed: INFLUENCESHARP_TEST_SEED when set, else 20240611.</summary>
    public static int Base { get; } =
        int.TryParse(Environment.GetEnvironmentVariable(Variable), out var s) ? s : 20240611;

    /// <summary>A seed for the calling test: the base seed mixed with the caller's name (stable across
    /// processes: FNV-1a, not string.GetHashCode, which is randomised per process).</summary>
    public static int For([System.Runtime.CompilerServices.CallerMemberName] string test = "")
    {
        uint h = 2166136261;
        foreach (char c in test) { h ^= c; h *= 16777619; }
        return (int)((uint)Base ^ h) & int.MaxValue;
    }

    public static string Describe([System.Runtime.CompilerServices.CallerMemberName] string test = "") =>
        $"seed {For(test)} ({Variable}={Base})";

    /// <summary>A System.Random seeded for the calling test.</summary>
    public static Random Random([System.Runtime.CompilerServices.CallerMemberName] string test = "") => new(For(test));
}
