namespace InfluenceSharp;

/// <summary>The one seed derivation of the library (SplitMix64 mixing). <see cref="Derive"/> gives
/// independent 31-bit seeds for System.Random from a base seed and item numbers, so item j's stream
/// does not depend on how many items there are and no two (seed, j) pairs collide the way
/// seed * C + j would. Pure arithmetic: the same in every process.</summary>
internal static class Seeds
{
    /// <summary>Stream tags: the first item after the base seed, so that two uses of one seed draw
    /// independent streams.</summary>
    public const int Shuffle = 0x5F1E, Augmentation = 0xA06, FisherSamples = 0xF15;

    public static int Derive(int seed, params int[] items)
    {
        ulong h = Mix((ulong)(uint)seed ^ 0x5DEECE66DUL);
        foreach (int item in items) h = Mix(h ^ (ulong)(uint)item);
        return (int)(h >> 33);
    }

    /// <summary>SplitMix64's step and finaliser: a bijection on 64-bit integers with good avalanche
    /// (the vectorised copies in the projection code's counter-based generator must agree with it).</summary>
    public static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
