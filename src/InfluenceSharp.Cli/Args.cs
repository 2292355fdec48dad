using System.Globalization;

namespace InfluenceSharp.Cli;

/// <summary>Minimal `--name value` / `--flag` parser. Every option a command reads is recorded, so
/// options nobody asked for are reported as errors instead of being silently ignored.</summary>
public sealed class Args
{
    private readonly Dictionary<string, string?> options = new(StringComparer.Ordinal);
    private readonly HashSet<string> used = new(StringComparer.Ordinal);

    public Args(IEnumerable<string> argv)
    {
        var list = argv.ToList();
        for (int i = 0; i < list.Count; i++)
        {
            string a = list[i];
            if (!a.StartsWith("--", StringComparison.Ordinal) || a.Length == 2)
            {
                Positionals.Add(a);
                continue;
            }
            string name = a[2..];
            string? value = null;
            int eq = name.IndexOf('=');
            if (eq >= 0) { value = name[(eq + 1)..]; name = name[..eq]; }
            else if (i + 1 < list.Count && !list[i + 1].StartsWith("--", StringComparison.Ordinal)) value = list[++i];
            if (options.ContainsKey(name)) throw new UsageException($"--{name} given twice");
            options[name] = value;
        }
    }

    public List<string> Positionals { get; } = new();

    public bool Has(string name) { used.Add(name); return options.ContainsKey(name); }

    public bool Flag(string name)
    {
        used.Add(name);
        if (!options.TryGetValue(name, out var v)) return false;
        return v is null || v is "true" or "1" or "yes" ? true
            : v is "false" or "0" or "no" ? false
            : throw new UsageException($"--{name}: expected no value or true/false, got '{v}'");
    }

    public string? Str(string name)
    {
        used.Add(name);
        if (!options.TryGetValue(name, out var v)) return null;
        return v ?? throw new UsageException($"--{name} needs a value");
    }

    public string Str(string name, string fallback) => Str(name) ?? fallback;

    public string Required(string name) => Str(name) ?? throw new UsageException($"--{name} is required");

    public int Int(string name, int fallback)
    {
        var s = Str(name);
        if (s is null) return fallback;
        return int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
            : throw new UsageException($"--{name}: '{s}' is not an integer");
    }

    public double Double(string name, double fallback)
    {
        var s = Str(name);
        if (s is null) return fallback;
        return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v
            : throw new UsageException($"--{name}: '{s}' is not a number");
    }

    public double? OptionalDouble(string name) => Has(name) ? Double(name, 0) : null;

    public int[] IntList(string name, int[] fallback)
    {
        var s = Str(name);
        if (s is null) return fallback;
        try { return s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray(); }
        catch (FormatException) { throw new UsageException($"--{name}: '{s}' is not a comma-separated list of integers"); }
    }

    /// <summary>Call after a command has read its options: unknown options are usage errors.</summary>
    public void RejectUnknown()
    {
        var unknown = options.Keys.Where(k => !used.Contains(k)).ToList();
        if (unknown.Count > 0) throw new UsageException($"unknown option{(unknown.Count > 1 ? "s" : "")}: {string.Join(", ", unknown.Select(u => "--" + u))}");
    }
}

/// <summary>Wrong command-line usage: printed with the help hint, exit code 2.</summary>
public sealed class UsageException : Exception
{
    public UsageException(string message) : base(message) { }
}
