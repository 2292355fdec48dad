using System.Globalization;

namespace InfluenceSharp;

/// <summary>"--shard i/n": this process does work items j with j % n == i, so n processes (a Slurm
/// array, a Kubernetes Indexed Job) split a stage without talking to each other.</summary>
public readonly record struct Shard(int Index, int Count)
{
    public static readonly Shard All = new(0, 1);

    public static Shard Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length == 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out int i)
            && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out int n)
            && n >= 1 && i < n)
            return new Shard(i, n);
        throw new InfluenceSharpException($"--shard {text}: expected i/n with 0 <= i < n (e.g. 0/4)");
    }

    public bool Contains(int item)
    {
        if (Count < 1 || Index < 0 || Index >= Count)
            throw new InfluenceSharpException($"--shard {Index}/{Count}: expected 0 <= i < n");
        return item % Count == Index;
    }

    public override string ToString() => $"{Index}/{Count}";
}
