using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace InfluenceSharp.Cli.CommandLine;

/// <summary>Typed option definitions with their parsers and validators. Every bad value is a parse
/// error naming the option (a usage error, exit 2) before any work starts. Each call makes a new
/// option, so each command owns its options and reads them back by instance.</summary>
internal static class Opt
{
    static T Described<T>(T option, string description, string? helpName) where T : Option
    {
        option.Description = description;
        if (helpName is not null) option.HelpName = helpName;
        return option;
    }

    static string? Token(ArgumentResult r) => r.Tokens.Count == 0 ? null : r.Tokens[^1].Value;

    public static Option<bool> Flag(string name, string description, params string[] aliases) =>
        Described(new Option<bool>(name, aliases), description, null);

    public static Option<string> Str(string name, string description, string helpName, string? fallback = null, bool required = false, params string[] aliases)
    {
        var o = Described(new Option<string>(name, aliases), description, helpName);
        if (fallback is not null) o.DefaultValueFactory = _ => fallback;
        o.Required = required;
        o.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && string.IsNullOrWhiteSpace(r.Tokens[^1].Value)) r.AddError($"{name}: an empty value");
        });
        return o;
    }

    /// <summary>One of a fixed set of words.</summary>
    public static Option<string> Choice(string name, string description, string fallback, params string[] choices)
    {
        var o = Described(new Option<string>(name), description, string.Join("|", choices));
        o.DefaultValueFactory = _ => fallback;
        o.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            if (!choices.Contains(v)) r.AddError($"{name} {v}: choose {string.Join(", ", choices)}");
        });
        return o;
    }

    /// <summary>One of a fixed set of words, or null when not given (the command picks a default from context).</summary>
    public static Option<string?> OptionalChoice(string name, string description, params string[] choices)
    {
        var o = Described(new Option<string?>(name), description, string.Join("|", choices));
        o.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string?>();
            if (v is not null && !choices.Contains(v)) r.AddError($"{name} {v}: choose {string.Join(", ", choices)}");
        });
        return o;
    }

    static bool TryInt(string s, out int v) => int.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out v);

    static string Range(long min, long max) => max == int.MaxValue ? $"at least {min}" : $"between {min} and {max}";

    /// <summary>An integer in [min, max].</summary>
    public static Option<int> Int(string name, string description, int fallback, int min, int max = int.MaxValue, string helpName = "N", params string[] aliases)
    {
        var o = Described(new Option<int>(name, aliases), description, helpName);
        o.DefaultValueFactory = _ => fallback;
        o.CustomParser = r =>
        {
            var s = Token(r);
            if (s is null) return fallback;
            if (!TryInt(s, out var v) || v < min || v > max) { r.AddError($"{name} {s}: expected an integer {Range(min, max)}"); return fallback; }
            return v;
        };
        return o;
    }

    /// <summary>An optional integer in [min, max] (null when not given).</summary>
    public static Option<int?> OptionalInt(string name, string description, int min, int max = int.MaxValue, string helpName = "N")
    {
        var o = Described(new Option<int?>(name), description, helpName);
        o.CustomParser = r =>
        {
            var s = Token(r);
            if (s is null) return null;
            if (!TryInt(s, out var v) || v < min || v > max) { r.AddError($"{name} {s}: expected an integer {Range(min, max)}"); return null; }
            return v;
        };
        return o;
    }

    static bool TryFinite(string s, out double v) =>
        double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out v) && double.IsFinite(v);

    static string Interval(double min, bool minOpen, double max, bool maxOpen) =>
        double.IsPositiveInfinity(max)
            ? (minOpen ? $"greater than {min.ToString(CultureInfo.InvariantCulture)}" : $"at least {min.ToString(CultureInfo.InvariantCulture)}")
            : $"in {(minOpen ? "(" : "[")}{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}{(maxOpen ? ")" : "]")}";

    static Func<ArgumentResult, double?> DoubleParser(string name, double min, bool minOpen, double max, bool maxOpen) => r =>
    {
        var s = Token(r);
        if (s is null) return null;
        if (!TryFinite(s, out var v) || v < min || (minOpen && v == min) || v > max || (maxOpen && v == max))
        {
            r.AddError($"{name} {s}: expected a finite number {Interval(min, minOpen, max, maxOpen)}");
            return null;
        }
        return v;
    };

    /// <summary>A finite number in the interval (open ends where said).</summary>
    public static Option<double> Double(string name, string description, double fallback, double min, bool minOpen = false,
        double max = double.PositiveInfinity, bool maxOpen = false, string helpName = "X")
    {
        var o = Described(new Option<double>(name), description, helpName);
        o.DefaultValueFactory = _ => fallback;
        var parse = DoubleParser(name, min, minOpen, max, maxOpen);
        o.CustomParser = r => parse(r) ?? fallback;
        return o;
    }

    public static Option<double?> OptionalDouble(string name, string description, double min, bool minOpen = false, string helpName = "X")
    {
        var o = Described(new Option<double?>(name), description, helpName);
        o.CustomParser = DoubleParser(name, min, minOpen, double.PositiveInfinity, false);
        return o;
    }

    /// <summary>Comma-separated items, none empty (so `--methods a,` and `--methods ,` are errors).</summary>
    static string[]? Items(ArgumentResult r, string name)
    {
        var s = Token(r);
        if (s is null) return null;
        var items = s.Split(',', StringSplitOptions.TrimEntries);
        if (items.Any(i => i.Length == 0)) { r.AddError($"{name} '{s}': an empty item in the comma-separated list"); return null; }
        return items;
    }

    /// <summary>A non-empty comma-separated list of integers in [min, max] (null when not given and no fallback).</summary>
    /// <param name="distinct">Refuse a value given twice: for seed lists (the same seed twice would
    /// count one retraining twice).</param>
    public static Option<int[]> IntList(string name, string description, int[]? fallback, int min, int max = int.MaxValue, bool distinct = false, string helpName = "N,...", params string[] aliases)
    {
        var o = Described(new Option<int[]>(name, aliases), description, helpName);
        if (fallback is not null) o.DefaultValueFactory = _ => fallback;
        o.CustomParser = r =>
        {
            var items = Items(r, name);
            if (items is null) return fallback;
            var values = new int[items.Length];
            for (int i = 0; i < items.Length; i++)
                if (!TryInt(items[i], out values[i]) || values[i] < min || values[i] > max)
                {
                    r.AddError($"{name} {items[i]}: expected integers {Range(min, max)}");
                    return fallback;
                }
            if (distinct && values.GroupBy(v => v).FirstOrDefault(g => g.Count() > 1) is { } twice)
            {
                r.AddError($"{name} {string.Join(",", items)}: a seed repeats ({twice.Key} is given {twice.Count()} times; it would count one retraining as several); give each seed once");
                return fallback;
            }
            return values;
        };
        return o;
    }

    /// <summary>A non-empty comma-separated list of positive numbers (null when not given).</summary>
    public static Option<double[]> PositiveDoubleList(string name, string description, string helpName = "X,...")
    {
        var o = Described(new Option<double[]>(name), description, helpName);
        o.CustomParser = r =>
        {
            var items = Items(r, name);
            if (items is null) return null;
            var values = new double[items.Length];
            for (int i = 0; i < items.Length; i++)
                if (!double.TryParse(items[i], NumberStyles.Float, CultureInfo.InvariantCulture, out values[i]) || !(values[i] > 0) || double.IsInfinity(values[i]))
                {
                    r.AddError($"{name} {items[i]}: expected positive numbers");
                    return null;
                }
            return values;
        };
        return o;
    }

    /// <summary>--methods a,b (alias --method); names checked against `allowed`; `single`: exactly one.</summary>
    public static Option<string[]> Methods(string? fallback, string[] allowed, bool single, string? what = null, bool required = false)
    {
        var o = Described(new Option<string[]>("--methods", "--method"),
            (what ?? (single ? "the method" : "methods, comma separated")) + ": " + string.Join(", ", allowed),
            single ? "M" : "M,...");
        if (fallback is not null) o.DefaultValueFactory = _ => fallback.Split(',');
        else o.Required = required;
        o.CustomParser = r =>
        {
            var items = Items(r, "--methods");
            if (items is null) return fallback?.Split(',') ?? Array.Empty<string>();
            foreach (var m in items)
                if (!allowed.Contains(m)) { r.AddError($"--methods {m}: unknown method here (choose {string.Join(", ", allowed)})"); return items; }
            if (single && items.Length != 1) r.AddError($"--methods {Token(r)}: this command takes one method");
            if (items.Distinct().Count() != items.Length) r.AddError($"--methods {Token(r)}: a method is named twice");
            return items;
        };
        return o;
    }

    /// <summary>--shard i/n: only partitions p with p % n == i (default: all).</summary>
    public static Option<Shard> Shard(string description = "do only partitions p with p % n == i; run again without --shard to merge")
    {
        var o = Described(new Option<Shard>("--shard"), description, "i/n");
        o.DefaultValueFactory = _ => InfluenceSharp.Shard.All;
        o.CustomParser = r =>
        {
            var s = Token(r);
            if (s is null) return InfluenceSharp.Shard.All;
            try { return InfluenceSharp.Shard.Parse(s); }
            catch (InfluenceSharpException e) { r.AddError(e.Message); return InfluenceSharp.Shard.All; }
        };
        return o;
    }

    /// <summary>--damping X|heuristic: null = heuristic (each method's default rule).</summary>
    public static Option<double?> Damping(string description)
    {
        var o = Described(new Option<double?>("--damping"), description, "X|heuristic");
        o.CustomParser = r =>
        {
            var s = Token(r);
            if (s is null or "heuristic") return null;
            if (TryFinite(s, out var v) && v >= 0) return v;
            r.AddError($"--damping {s}: expected a non-negative finite number or 'heuristic'");
            return null;
        };
        return o;
    }

    /// <summary>An option's value in a validator, or default when the option failed to parse (its
    /// own error is reported; GetValue would throw).</summary>
    public static T? ValueIfValid<T>(SymbolResult r, Option<T> option)
    {
        try { return r.GetValue(option); }
        catch (InvalidOperationException) { return default; }
    }

    /// <summary>--model: a built-in architecture or a user's module, path/to/Models.dll:Namespace.Type.</summary>
    public static Option<string> Model(string fallback = "smallcnn", bool required = false)
    {
        var o = Str("--model", $"architecture: {string.Join("|", InfluenceSharp.Models.ModelSpec.Architectures)} (mlp: --widths), or your own module as path/to/Models.dll:Namespace.Type (a public constructor taking the class count, or a static Create(int numClasses))",
            "ARCH", required ? null : fallback, required);
        o.Validators.Add(r =>
        {
            var v = r.GetValueOrDefault<string>();
            if (v is null || InfluenceSharp.Models.ModelSpec.Architectures.Contains(v)) return;
            if (InfluenceSharp.Models.CustomModel.IsCustom(v))
            {
                var path = v[..v.LastIndexOf(':')];
                if (!File.Exists(path)) r.AddError($"--model {v}: assembly {path} not found");
                return;
            }
            r.AddError($"--model {v}: choose {string.Join(", ", InfluenceSharp.Models.ModelSpec.Architectures)}, or path/to/Models.dll:Namespace.Type");
        });
        return o;
    }

    /// <summary>--run RUN_DIR: a run directory written by `influence train` (or `demo`: OUT/run).</summary>
    public static Option<string> Run() =>
        Str("--run", "run directory (written by `influence train --out`, or OUT/run of the demo)", "RUN_DIR", required: true);

    /// <summary>--data for commands that read a run: the run's recorded data unless overridden.</summary>
    public static Option<string> RunData() =>
        Str("--data", "where the run's training data is, if not where the run recorded it: " + DataSpecs + " [default: the run's]", "SPEC");

    /// <summary>"embedded | auto | fashion-mnist | cifar10:DIR | ... | DIR": the keywords and every registered data reader.</summary>
    public static string DataSpecs => "embedded | auto | fashion-mnist | " + string.Join(" | ", Data.DataReaders.All.Select(r => r.Usage)) + " | DIR";

    /// <summary>--data for commands that load a data set afresh: `embedded` unless given.</summary>
    public static Option<string> FreshData() =>
        Str("--data", $"data set: {DataSpecs} (embedded = the 10,000-image Fashion-MNIST subset in the library; auto = full Fashion-MNIST when installed, else embedded)", "SPEC", fallback: "embedded");

    public static Option<string> Out(string description, bool required = false) =>
        Str("--out", description, "DIR", required: required);
}
