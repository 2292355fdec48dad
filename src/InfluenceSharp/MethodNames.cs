namespace InfluenceSharp;

/// <summary>Method names as users type them, and the older names that manifests written by earlier
/// versions hold: those still load as the method they now name.</summary>
public static class MethodNames
{
    static readonly Dictionary<string, string> Renamed = new(StringComparer.Ordinal)
    {
        ["if-ekfac"] = "ekfac", ["if-kfac"] = "kfac", ["if-diagonal"] = "diagonal", ["if-identity"] = "identity",
        ["tracin-cp"] = "tracin", ["tracin-fast"] = "tracin-last", ["tracin-fast-stacked"] = "tracin-last-stacked", ["tracin-randproj"] = "tracin-proj",
    };

    /// <summary>The current name of a method named in a manifest (an older name maps to its new one;
    /// any other name is returned as is).</summary>
    public static string Canonical(string name) => Renamed.TryGetValue(name, out var now) ? now : name;

    /// <summary>Whether two manifest method names name the same method.</summary>
    public static bool Same(string a, string b) => Canonical(a) == Canonical(b);
}
