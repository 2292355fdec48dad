using System.Text.RegularExpressions;

namespace InfluenceSharp.Tests.Audit;

/// <summary>The library's rooms (its top-level folders, one namespace each) are ordered: a room may
/// use the rooms below it, never one above it, so no two rooms depend on each other. Read from the
/// source: every `using InfluenceSharp.X`, `InfluenceSharp.X.` and `X.Type` where Type is declared
/// in room X counts as a use. docs/architecture.md draws the same order.</summary>
public class RoomOrderTests
{
    /// <summary>Bottom first. The root namespace (exception, shard, seeds) is below every room.</summary>
    public static readonly string[] Order =
    {
        "Formats", "Storage", "Native", "Diagnostics", "Data", "Models", "Training", "Runs", "Gradients", "Features", "Methods", "Scores",
        "Evaluation",
    };

    static string LibrarySource()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "InfluenceSharp.slnx"))) dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        return Path.Combine(dir, "src", "InfluenceSharp");
    }

    static string Code(string text) =>
        // Comments and string literals do not make a dependency.
        Regex.Replace(text, @"//[^\n]*|/\*.*?\*/|@?\$?""(?:[^""\\\n]|\\.)*""", "", RegexOptions.Singleline);

    /// <summary>(file's room, used room, file) for every use of another room.</summary>
    public static List<(string From, string To, string File)> Uses(string root)
    {
        var files = Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}"))
            .ToList();
        string RoomOf(string f)
        {
            var rel = Path.GetRelativePath(root, f).Split(Path.DirectorySeparatorChar);
            return rel.Length == 1 ? "" : rel[0];
        }
        var types = new Dictionary<string, HashSet<string>>();
        foreach (var f in files)
            foreach (Match m in Regex.Matches(Code(File.ReadAllText(f)), @"\b(?:class|record|struct|interface|enum)\s+([A-Z]\w*)"))
                (types.TryGetValue(RoomOf(f), out var set) ? set : types[RoomOf(f)] = new HashSet<string>()).Add(m.Groups[1].Value);
        var uses = new List<(string, string, string)>();
        foreach (var f in files)
        {
            string from = RoomOf(f);
            if (Path.GetFileName(f) == "GlobalUsings.cs") continue; // the formats room, imported everywhere
            string code = Code(File.ReadAllText(f));
            var used = new HashSet<string>();
            foreach (Match m in Regex.Matches(code, @"\bInfluenceSharp\.([A-Z]\w*)")) used.Add(m.Groups[1].Value);
            foreach (Match m in Regex.Matches(code, @"(?<![\w.])([A-Z]\w*)\.([A-Z]\w*)"))
                if (types.TryGetValue(m.Groups[1].Value, out var declared) && declared.Contains(m.Groups[2].Value)) used.Add(m.Groups[1].Value);
            foreach (var to in used)
                if (to != from && Order.Contains(to)) uses.Add((from, to, Path.GetRelativePath(root, f)));
        }
        return uses;
    }

    [Fact]
    public void EveryRoomIsListedInTheOrder()
    {
        var rooms = Directory.GetDirectories(LibrarySource()).Select(Path.GetFileName).Where(d => d is not ("bin" or "obj")).Order().ToList();
        Assert.Equal(Order.Order(), rooms);
    }

    [Fact]
    public void NoRoomUsesARoomAboveIt()
    {
        var wrong = Uses(LibrarySource())
            .Where(u => u.From == "" || Array.IndexOf(Order, u.To) > Array.IndexOf(Order, u.From))
            .Select(u => $"{u.File}: {(u.From == "" ? "the root namespace" : u.From)} uses {u.To}, which is above it")
            .ToList();
        Assert.True(wrong.Count == 0, string.Join("\n", wrong));
    }

    /// <summary>The scan sees the kinds of use that made the old loops (a qualified type name and a
    /// using), so the check above is not vacuous.</summary>
    [Fact]
    public void TheScanSeesQualifiedNamesAndUsings()
    {
        using var dir = new TempDir();
        Directory.CreateDirectory(dir.File("Data"));
        Directory.CreateDirectory(dir.File("Evaluation"));
        Directory.CreateDirectory(dir.File("Scores"));
        File.WriteAllText(dir.File("Evaluation/Seeds.cs"), "namespace InfluenceSharp.Evaluation; static class Seeds { }");
        File.WriteAllText(dir.File("Data/Tinted.cs"), "namespace InfluenceSharp.Data; class T { int x = Evaluation.Seeds.Derive(1); string s = \"Scores.Npy\"; }");
        File.WriteAllText(dir.File("Scores/Npy.cs"), "using InfluenceSharp.Evaluation;\nnamespace InfluenceSharp.Scores; // Data.Tinted\nclass Npy { }");
        var uses = Uses(dir.Path).Select(u => (u.From, u.To)).Order().ToList();
        Assert.Equal(new[] { ("Data", "Evaluation"), ("Scores", "Evaluation") }, uses);
    }
}
