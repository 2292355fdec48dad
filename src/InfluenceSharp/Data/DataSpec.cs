using System.Globalization;
using System.Text;

namespace InfluenceSharp.Data;

/// <summary>Options for the readers of user data, from the command line (--image-size, --channels,
/// --test-fraction, --test-data, --label-column). Each one is folded into the spec's query string
/// (<c>KIND:PATH?key=value&amp;...</c>), which the run records, so later commands rebuild the same data.
/// Null: the spec's value or the reader's default.</summary>
public sealed record DataOptions
{
    /// <summary>imagefolder: resize every image to this height and width.</summary>
    public (int Height, int Width)? ImageSize { get; init; }
    /// <summary>imagefolder: 1 (grey) or 3 (RGB).</summary>
    public int? Channels { get; init; }
    /// <summary>imagefolder, tensors, csv: the fraction of examples held out as the test set when the data has no test part.</summary>
    public double? TestFraction { get; init; }
    /// <summary>tensors, csv: the test set's file(s) (a bare path or a spec of the same kind).</summary>
    public string? TestData { get; init; }
    /// <summary>csv: the label column's name.</summary>
    public string? LabelColumn { get; init; }

    public bool IsEmpty => ImageSize is null && Channels is null && TestFraction is null && TestData is null && LabelColumn is null;
}

/// <summary>A parsed --data spec: <c>embedded</c> | <c>auto</c> | <c>fashion-mnist</c> |
/// <c>cifar10:DIR</c> | <c>imagefolder:DIR</c> | <c>tensors:FILE</c> (.safetensors, .npz, or
/// <c>X.npy,y.npy</c>) | <c>csv:FILE</c> | a directory (IDX or CIFAR-10 files), the readers of user
/// data taking options after a '?': <c>imagefolder:DIR?size=32x32&amp;channels=3</c>. Values in the
/// query escape '%', '&amp;' and '=' as %25, %26 and %3D.</summary>
public sealed record DataSpec(DataKind Kind, string? Path, IReadOnlyDictionary<string, string> Query)
{
    /// <summary>The options a kind's spec takes after '?' (its reader's keys; none for keywords and directories).</summary>
    static IReadOnlyList<string> KeysOf(DataKind kind) => DataReaders.Find(kind.Name)?.Keys ?? Array.Empty<string>();

    /// <summary>The reader of this spec's kind (null for keywords and directories).</summary>
    public DataReader? Reader => DataReaders.Find(Kind.Name);

    public string? this[string key] => Query.TryGetValue(key, out var v) ? v : null;

    public static DataSpec Parse(string spec)
    {
        var empty = new Dictionary<string, string>();
        switch (spec)
        {
            case "embedded": return new(DataKind.Embedded, null, empty);
            case "auto": return new(DataKind.Auto, null, empty);
            case "fashion-mnist": return new(DataKind.FashionMnist, null, empty);
            case "tinted": return Parse("tinted:embedded");
        }
        foreach (var reader in DataReaders.All)
        {
            string prefix = reader.Prefix + ":";
            if (!spec.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var kind = reader.Kind;
            string rest = spec[prefix.Length..];
            var query = new Dictionary<string, string>(StringComparer.Ordinal);
            int q = rest.IndexOf('?');
            if (q >= 0 && reader.Keys.Count > 0)
            {
                foreach (var part in rest[(q + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries))
                {
                    int eq = part.IndexOf('=');
                    if (eq <= 0) throw new InfluenceSharpException($"--data {spec}: '{part}' is not key=value");
                    string key = part[..eq], value = Unescape(part[(eq + 1)..]);
                    if (!reader.Keys.Contains(key))
                        throw new InfluenceSharpException($"--data {spec}: unknown option '{key}' for {prefix[..^1]} data (known: {string.Join(", ", reader.Keys)})");
                    if (!query.TryAdd(key, value)) throw new InfluenceSharpException($"--data {spec}: option '{key}' given twice");
                }
                rest = rest[..q];
            }
            if (rest.Length == 0) throw new InfluenceSharpException($"--data {spec}: no path after '{prefix}'");
            var parsed = new DataSpec(kind, rest, query);
            parsed.Validate(spec);
            return parsed;
        }
        return new(DataKind.Directory, spec, empty);
    }

    /// <summary>Checks the query's values (sizes, channels, fractions, seeds).</summary>
    void Validate(string spec)
    {
        if (this["size"] is { } s) ParseSize(s, $"--data {spec}: size");
        if (this["channels"] is { } c && c is not ("1" or "3")) throw new InfluenceSharpException($"--data {spec}: channels={c}: choose 1 or 3");
        if (this["test-fraction"] is { } f)
            if (!double.TryParse(f, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) || !(v > 0 && v < 1))
                throw new InfluenceSharpException($"--data {spec}: test-fraction={f}: a number between 0 and 1 (exclusive)");
        if (this["split-seed"] is { } sd && (!int.TryParse(sd, NumberStyles.None, CultureInfo.InvariantCulture, out _)))
            throw new InfluenceSharpException($"--data {spec}: split-seed={sd}: a non-negative integer");
        Reader?.Validate(this, spec);
        foreach (var k in new[] { "x", "y", "label" })
            if (this[k] is "") throw new InfluenceSharpException($"--data {spec}: {k}= needs a name");
    }

    /// <summary>"H" (square) or "HxW", each between 1 and 4096.</summary>
    public static (int Height, int Width) ParseSize(string s, string what)
    {
        var parts = s.Split('x');
        if (parts.Length is 1 or 2 && parts.All(p => int.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var v) && v >= 1 && v <= 4096))
        {
            int h = int.Parse(parts[0], CultureInfo.InvariantCulture);
            return (h, parts.Length == 2 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : h);
        }
        throw new InfluenceSharpException($"{what} {s}: expected H or HxW, each between 1 and 4096");
    }

    /// <summary>This spec with the command line's options folded into its query (an option given
    /// both ways must agree), refusing options that do not apply to the kind.</summary>
    public DataSpec With(DataOptions? options)
    {
        if (options is null || options.IsEmpty) return this;
        var q = new Dictionary<string, string>(Query, StringComparer.Ordinal);
        void Set(string option, string key, string? value)
        {
            if (value is null) return;
            if (!KeysOf(Kind).Contains(key))
                throw new InfluenceSharpException($"{option}: does not apply to --data {this} (only to {string.Join(", ", DataReaders.All.Where(r => r.Keys.Contains(key)).Select(r => r.Prefix + ":..."))})");
            if (q.TryGetValue(key, out var old) && old != value)
                throw new InfluenceSharpException($"{option} {value}: --data {this} says {key}={old}");
            q[key] = value;
        }
        Set("--image-size", "size", options.ImageSize is { } s ? $"{s.Height}x{s.Width}" : null);
        Set("--channels", "channels", options.Channels?.ToString(CultureInfo.InvariantCulture));
        Set("--test-fraction", "test-fraction", options.TestFraction?.ToString("R", CultureInfo.InvariantCulture));
        Set("--label-column", "label", options.LabelColumn);
        if (options.TestData is { } t)
        {
            string prefix = KindPrefix(Kind);
            if (t.StartsWith(prefix, StringComparison.Ordinal)) t = t[prefix.Length..];
            else if (DataReaders.All.Any(r => t.StartsWith(r.Prefix + ":", StringComparison.Ordinal)))
                throw new InfluenceSharpException($"--test-data {t}: must be {prefix}... like --data {this}");
            Set("--test-data", "test", t);
        }
        var spec = new DataSpec(Kind, Path, q);
        spec.Validate(spec.ToString());
        return spec;
    }

    /// <summary>The same spec with <paramref name="key"/> set (used to record resolved values).</summary>
    public DataSpec Set(string key, string value) => new(Kind, Path, new Dictionary<string, string>(Query, StringComparer.Ordinal) { [key] = value });

    /// <summary>The same spec with recorded options this one does not give (a --data override of
    /// a run's data inherits the run's reader options).</summary>
    public DataSpec Inherit(DataSpec recorded)
    {
        if (recorded.Kind != Kind) return this;
        var q = new Dictionary<string, string>(Query, StringComparer.Ordinal);
        foreach (var (k, v) in recorded.Query) q.TryAdd(k, v);
        return new DataSpec(Kind, Path, q);
    }

    /// <summary>"imagefolder:" for a reader's kind; empty for keywords and directories.</summary>
    public static string KindPrefix(DataKind kind) => DataReaders.Find(kind.Name) is { } r ? r.Prefix + ":" : "";

    /// <summary>The canonical text: KIND:PATH?key=value&amp;... with keys in a fixed order.</summary>
    public override string ToString()
    {
        if (Kind == DataKind.Directory) return Path!;
        if (Reader is null) return Kind.Name;   // embedded, auto, fashion-mnist
        var sb = new StringBuilder(KindPrefix(Kind)).Append(Path);
        char sep = '?';
        foreach (var k in KeysOf(Kind).Where(Query.ContainsKey))
        {
            sb.Append(sep).Append(k).Append('=').Append(Escape(Query[k]));
            sep = '&';
        }
        return sb.ToString();
    }

    static string Escape(string v) => v.Replace("%", "%25").Replace("&", "%26").Replace("=", "%3D");
    static string Unescape(string v) => v.Replace("%3D", "=").Replace("%3d", "=").Replace("%26", "&").Replace("%25", "%");

    public double TestFraction => this["test-fraction"] is { } f ? double.Parse(f, CultureInfo.InvariantCulture) : DataSource.DefaultTestFraction;
    public int SplitSeed => this["split-seed"] is { } s ? int.Parse(s, CultureInfo.InvariantCulture) : 0;
}
