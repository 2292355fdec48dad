using System.CommandLine;
using System.Text.RegularExpressions;

namespace InfluenceSharp.Tests.Cli;

/// <summary>Runs the `influence` command in process with stdout and stderr captured.</summary>
public static class CliRunner
{
    public static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter(); var e = new StringWriter();
        var (oldOut, oldErr) = (Console.Out, Console.Error);
        Console.SetOut(o); Console.SetError(e);
        try { return (InfluenceSharp.Cli.Cli.Run(args), o.ToString(), e.ToString()); }
        finally { Console.SetOut(oldOut); Console.SetError(oldErr); }
    }

    /// <summary>Every command of the tree with its path ("scores pairwise"), groups included.</summary>
    public static List<(string Path, Command Command)> AllCommands()
    {
        var list = new List<(string, Command)>();
        void Walk(Command c, string path)
        {
            list.Add((path, c));
            foreach (var s in c.Subcommands) Walk(s, path.Length == 0 ? s.Name : $"{path} {s.Name}");
        }
        Walk(InfluenceSharp.Cli.Cli.Build(), "");
        return list;
    }
}

/// <summary>The command line itself: generated help on every command, usage errors before any work,
/// and the README's option lists against the tree.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class CommandLineTests
{
    static string[] Split(string path) => path.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    static string[] TopLevel() => Directory.GetFileSystemEntries(Directory.GetCurrentDirectory()).Order().ToArray();

    public static TheoryData<string> CommandPaths()
    {
        var data = new TheoryData<string>();
        foreach (var (path, _) in CliRunner.AllCommands()) data.Add(path);
        return data;
    }

    [Theory]
    [MemberData(nameof(CommandPaths))]
    public void HelpOnEveryCommandListsItsOptionsAndHasNoSideEffects(string path)
    {
        var command = CliRunner.AllCommands().Single(c => c.Path == path).Command;
        Assert.True(command.Options.Count > 0 || command.Subcommands.Count > 0 || command.Arguments.Count > 0);
        foreach (var flag in new[] { "-h", "--help", "-?" })
        {
            using var dir = new TempDir();
            var before = TopLevel();
            var args = Split(path).ToList();
            // Where a command writes, point it into an empty directory that must stay empty.
            if (command.Options.Any(o => o.Name == "--out")) args.AddRange(new[] { "--out", dir.File("out") });
            if (command.Options.Any(o => o.Name == "--run")) args.AddRange(new[] { "--run", dir.File("run") });
            args.Add(flag);
            var r = CliRunner.Run(args.ToArray());
            Assert.True(r.Code == 0, $"influence {string.Join(' ', args)}: exit {r.Code}\n{r.Err}");
            Assert.Equal("", r.Err);
            Assert.Contains("Usage:", r.Out);
            foreach (var o in command.Options.Where(o => !o.Hidden)) Assert.Contains(o.Name, r.Out);
            foreach (var s in command.Subcommands) Assert.Contains(s.Name, r.Out);
            Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
            Assert.Equal(before, TopLevel());
        }
    }

    [Fact]
    public void VersionAndMissingSubcommands()
    {
        var r = CliRunner.Run("--version");
        Assert.Equal(0, r.Code);
        Assert.Equal(LibraryInfo.Version, r.Out.Trim());
        foreach (var group in new[] { "", "scores", "data", "evaluate" })
        {
            r = CliRunner.Run(Split(group));
            Assert.Equal(2, r.Code);
            Assert.Equal("", r.Out);
            Assert.Contains("Required command was not provided", r.Err);
            // The group's subcommands are listed (on stderr: this is a usage error).
            foreach (var sub in CliRunner.AllCommands().Single(c => c.Path == group).Command.Subcommands) Assert.Contains(sub.Name, r.Err);
        }
    }

    /// <summary>Bad command lines: {tmp} is an empty directory that must stay empty.</summary>
    public static TheoryData<string, string> BadCommandLines() => new()
    {
        { "frobnicate", "frobnicate" },
        { "train --out {tmp}/x --bogus 1", "--bogus" },
        { "train --out {tmp}/x stray", "stray" },
        { "train --data embedded", "--out" },
        { "train --out {tmp}/x --epochs two", "--epochs" },
        { "train --out {tmp}/x --epochs 0", "--epochs" },
        { "train --out {tmp}/x --epochs 1.5", "--epochs" },
        { "train --out {tmp}/x --widths 99999999999", "--widths" },
        { "train --out {tmp}/x --widths 0", "--widths" },
        { "train --out {tmp}/x --widths 64,,32", "--widths" },
        { "train --out {tmp}/x --train-count -5", "--train-count" },
        { "train --out {tmp}/x --train-count 0", "--train-count" },
        { "train --out {tmp}/x --corrupt -0.1", "--corrupt" },
        { "train --out {tmp}/x --corrupt 1.5", "--corrupt" },
        { "train --out {tmp}/x --corrupt NaN", "--corrupt" },
        { "train --out {tmp}/x --lr 0", "--lr" },
        { "train --out {tmp}/x --lr Infinity", "--lr" },
        { "train --out {tmp}/x --momentum 1", "--momentum" },
        { "train --out {tmp}/x --weight-decay -1", "--weight-decay" },
        { "train --out {tmp}/x --batch-size 0", "--batch-size" },
        { "train --out {tmp}/x --model vgg", "--model" },
        { "train --out {tmp}/x --schedule cosine", "--schedule" },
        { "train --out {tmp}/x --peak-epoch -1", "--peak-epoch" },
        { "train --out {tmp}/x --seed -3", "--seed" },
        { "train --out {tmp}/x --threads 0", "--threads" },
        { "train --out {tmp}/x --device gpu", "--device" },
        { "train --out {tmp}/x --device cuda:x", "--device" },
        { "train --out {tmp}/x --epochs 1 --epochs 2", "--epochs" },
        { "demo --out {tmp}/d --methods ,", "--methods" },
        { "demo --out {tmp}/d --methods identity, tracin", "--methods" },
        { "demo --out {tmp}/d --methods identity,bogus", "--methods" },
        { "demo --out {tmp}/d --epochs -1", "--epochs" },
        { "data subset --out {tmp}/s --train-count 0", "--train-count" },
        { "data info --data", "--data" },
        { "fit-factors --run {tmp}/r --out {tmp}/f --shard 3/2", "--shard" },
        { "fit-factors --run {tmp}/r --out {tmp}/f --shard 1", "--shard" },
        { "fit-factors --run {tmp}/r --out {tmp}/f --strategy lissa", "--strategy" },
        { "fit-factors --run {tmp}/r --out {tmp}/f --fisher maybe", "--fisher" },
        { "fit-factors --run {tmp}/r --out {tmp}/f --partition-size 0", "--partition-size" },
        { "fit-factors --out {tmp}/f", "--run" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o", "--factors" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --methods trak", "--methods" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --query-count -5", "--query-count" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --query 1,x", "--query" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --query 1 --query-count 3", "--query-count" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --queries val", "--queries" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --damping abc", "--damping" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --damping NaN", "--damping" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --damping -1", "--damping" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --damping Infinity", "--damping" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --query-rank -1", "--query-rank" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --factors {tmp}/f --proj-dim 64", "--proj-dim" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --methods tracin --bf16", "--bf16" },
        { "scores pairwise --run {tmp}/r --out {tmp}/o --methods tracin,trak", "--methods" },
        { "scores self --run {tmp}/r --out {tmp}/o --methods trak --measure bits", "--measure" },
        { "build-store --run {tmp}/r --methods ekfac", "--methods" },
        { "build-store --run {tmp}/r", "--methods" },
        { "build-store --run {tmp}/r --methods trak --ensemble 0", "--ensemble" },
        { "build-store --run {tmp}/r --methods trak --proj-layout sparse", "--proj-layout" },
        { "detect-mislabeled --run {tmp}/r --out {tmp}/d --top 0", "--top" },
        { "detect-mislabeled --run {tmp}/r --out {tmp}/d --methods ekfac,ekfac", "--methods" },
        { "explain --run {tmp}/r --out {tmp}/e", "--query" },
        { "explain --run {tmp}/r --out {tmp}/e --query 1 --query-image {tmp}/q.png", "--query-image" },
        { "explain --run {tmp}/r --out {tmp}/e --query 1 --query-label 3", "--query-label" },
        { "explain --run {tmp}/r --out {tmp}/e --query -1", "--query" },
        { "evaluate lds --run {tmp}/r --out {tmp}/l --alpha 1", "--alpha" },
        { "evaluate lds --run {tmp}/r --out {tmp}/l --alpha NaN", "--alpha" },
        { "evaluate lds --run {tmp}/r --out {tmp}/l --subsets 1", "--subsets" },
        { "evaluate lds --run {tmp}/r --out {tmp}/l --target accuracy", "--target" },
        { "evaluate lds --run {tmp}/r --out {tmp}/l --shard 2/2", "--shard" },
        { "evaluate remove --run {tmp}/r --out {tmp}/x --seeds ,", "--seeds" },
        { "evaluate remove --run {tmp}/r --out {tmp}/x --remove-counts 0", "--remove-counts" },
        { "evaluate remove --run {tmp}/r --out {tmp}/x --k 10,-1", "--remove-counts" },
        { "evaluate remove --run {tmp}/r --out {tmp}/x --methods kfac,ekfac", "--methods" },
        { "report --run {tmp}/r --out {tmp}/x --top 3", "--top" },
    };

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public void BadCommandLinesAreUsageErrorsNamingTheOptionAndWriteNothing(string line, string option)
    {
        using var dir = new TempDir();
        var before = TopLevel();
        var r = CliRunner.Run(Split(line.Replace("{tmp}", dir.Path)));
        Assert.True(r.Code == 2, $"influence {line}: exit {r.Code}\n{r.Out}\n{r.Err}");
        Assert.Equal("", r.Out);
        Assert.Contains(option, r.Err);
        Assert.StartsWith("influence: ", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
        Assert.Equal(before, TopLevel());
    }

    /// <summary>README.md's "Command reference" table lists every command with exactly its options.</summary>
    [Fact]
    public void ReadmeOptionListsAgreeWithTheCommandTree()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "README.md"))) dir = Path.GetDirectoryName(dir);
        Assert.NotNull(dir);
        var readme = File.ReadAllText(Path.Combine(dir, "README.md"));
        int start = readme.IndexOf("## Command reference", StringComparison.Ordinal);
        Assert.True(start >= 0, "README.md has no '## Command reference' section");
        int end = readme.IndexOf("\n## ", start + 3, StringComparison.Ordinal);
        var section = end < 0 ? readme[start..] : readme[start..end];
        var documented = new Dictionary<string, HashSet<string>>();
        foreach (Match m in Regex.Matches(section, @"^\| `influence ([a-z -]+)` \|(.*)\|\s*$", RegexOptions.Multiline))
            documented[m.Groups[1].Value.Trim()] = Regex.Matches(m.Groups[2].Value, @"--[a-z0-9-]+").Select(o => o.Value).ToHashSet();

        var actual = CliRunner.AllCommands().Where(c => c.Command.Action is not null && c.Path.Length > 0)
            .ToDictionary(c => c.Path, c => c.Command.Options.Where(o => !o.Hidden && o.Name is not "--help").Select(o => o.Name).ToHashSet());
        Assert.Equal(actual.Keys.Order(), documented.Keys.Order());
        foreach (var (path, options) in actual)
        {
            var missing = options.Except(documented[path]).ToList();
            var extra = documented[path].Except(options).ToList();
            Assert.True(missing.Count == 0 && extra.Count == 0,
                $"influence {path}: README lacks {string.Join(' ', missing)}; README has unknown {string.Join(' ', extra)}\n" +
                $"expected: | `influence {path}` | {string.Join(' ', options.Select(o => $"`{o}`"))} |");
        }
    }
}
