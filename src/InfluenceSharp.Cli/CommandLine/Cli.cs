using System.CommandLine;
using System.CommandLine.Invocation;
using InfluenceSharp.Cli.Commands;

namespace InfluenceSharp.Cli;

/// <summary>The `influence` command: a System.CommandLine tree (nouns and verbs, generated help,
/// `[suggest]` completion) and the exit-code and stream conventions: results on stdout; progress,
/// logs, profiler tables and errors on stderr; 0 ok, 1 runtime error, 2 usage error.</summary>
public static class Cli
{
    /// <summary>The whole command tree (a new one each call: options hold no state between runs).</summary>
    public static RootCommand Build()
    {
        var root = new RootCommand("influence: training-data attribution for TorchSharp models (TracIn, influence functions, TRAK)")
        {
            DemoCommand.Command(),
            TrainCommand.Command(),
            ImportCommand.Command(),
            DataCommands.Command(),
            InfluenceCommands.FitFactorsCommand(),
            InfluenceCommands.ScoresCommand(),
            FeatureCommands.BuildStoreCommand(),
            IndexCommands.Command(),
            DetectCommand.Command(),
            ExplainCommand.Command(),
            EvaluateCommands.Command(),
            CurateCommand.Command(),
            ReportCommand.Command(),
            Serve.ServeCommand.Command(),
        };
        root.Add(HelpCommand(root));
        // --version prints the library's version, not the assembly's informational version.
        foreach (var v in root.Options.OfType<VersionOption>()) v.Action = new PrintVersion();
        return root;
    }

    /// <summary>`influence help [command ...]`: the same page as `influence [command ...] --help`.</summary>
    static Command HelpCommand(RootCommand root)
    {
        var names = new Argument<string[]>("command") { Description = "the command (and subcommand) to describe", Arity = ArgumentArity.ZeroOrMore };
        var cmd = new Command("help", "show the help of a command: influence help [command [subcommand]]") { names };
        cmd.SetAction(p =>
        {
            var path = p.GetValue(names) ?? Array.Empty<string>();
            Command at = root;
            foreach (var n in path)
            {
                var next = at.Subcommands.FirstOrDefault(c => c.Name == n || c.Aliases.Contains(n));
                if (next is null)
                {
                    string where = at is RootCommand ? "influence" : $"influence {at.Name}";
                    var guess = Suggest(n, at.Subcommands.Where(c => !c.Hidden && c.Name != "help").Select(c => c.Name));
                    throw new UsageException($"help: '{n}' is not a command of {where}" + (guess.Count > 0 ? $"; did you mean {string.Join(" or ", guess.Select(g => $"'{g}'"))}?" : $" (its commands: {string.Join(", ", at.Subcommands.Where(c => !c.Hidden).Select(c => c.Name))})"));
                }
                at = next;
            }
            return root.Parse(path.Append("--help").ToArray()).Invoke(new InvocationConfiguration { Output = p.InvocationConfiguration.Output, Error = p.InvocationConfiguration.Error });
        });
        return cmd;
    }

    /// <summary>The names closest to a mistyped one (edit distance at most a third of its length,
    /// at least 1; or a name it is a prefix of): those at the smallest distance, at most three.</summary>
    internal static List<string> Suggest(string typed, IEnumerable<string> names)
    {
        string t = typed.ToLowerInvariant();
        var scored = new List<(string Name, int Score)>();
        foreach (var name in names.Distinct())
        {
            string n = name.ToLowerInvariant();
            if (n == t) continue;
            int d = Distance(t, n);
            int limit = Math.Max(1, t.TrimStart('-').Length / 3);
            if (d <= limit) scored.Add((name, d));
            else if (t.TrimStart('-').Length >= 3 && n.StartsWith(t, StringComparison.Ordinal)) scored.Add((name, limit + 1));
        }
        if (scored.Count == 0) return new List<string>();
        int best = scored.Min(s => s.Score);
        return scored.Where(s => s.Score == best).OrderBy(s => s.Name, StringComparer.Ordinal).Take(3).Select(s => s.Name).ToList();
    }

    /// <summary>Optimal string alignment distance (insertions, deletions, substitutions, adjacent swaps).</summary>
    static int Distance(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (int j = 0; j <= b.Length; j++) d[0, j] = j;
        for (int i = 1; i <= a.Length; i++)
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = a[i - 1] == b[j - 1] ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
            }
        return d[a.Length, b.Length];
    }

    /// <summary>"did you mean" lines for the tokens a parse did not recognise: subcommands of the
    /// command it ended in for words, that command's options for tokens starting with '-'.</summary>
    static IEnumerable<string> TypoHints(ParseResult parse)
    {
        var command = parse.CommandResult.Command;
        var optionNames = new List<string>();
        for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            foreach (var o in r.Command.Options)
                if (!o.Hidden && (ReferenceEquals(r, parse.CommandResult) || o.Recursive))
                {
                    optionNames.Add(o.Name);
                    optionNames.AddRange(o.Aliases.Where(a => a.StartsWith("--", StringComparison.Ordinal)));
                }
        var commandNames = command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name).ToList();
        foreach (var token in parse.UnmatchedTokens.Distinct())
        {
            var guess = Suggest(token, token.StartsWith('-') ? optionNames : commandNames);
            if (guess.Count > 0) yield return $"'{token}': did you mean {string.Join(" or ", guess.Select(g => $"'{g}'"))}?";
        }
    }

    sealed class PrintVersion : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            parseResult.InvocationConfiguration.Output.WriteLine(LibraryInfo.Version);
            return 0;
        }
    }

    /// <summary>Runs a command line; returns the process exit code (0 ok, 1 error, 2 usage).</summary>
    public static int Run(string[] args)
    {
        var output = Console.Out;
        var error = Console.Error;
        var root = Build();
        var parse = root.Parse(args);
        if (parse.Action is ParseErrorAction)
        {
            foreach (var e in parse.Errors) error.WriteLine($"influence: {e.Message}");
            foreach (var hint in TypoHints(parse)) error.WriteLine($"influence: {hint}");
            var command = parse.CommandResult.Command;
            string path = CommandPath(parse);
            // A group (`influence`, `scores`, `data`, `evaluate`) without its subcommand: list them.
            if (command.Action is null && command.Subcommands.Count > 0 && parse.Errors.Count == 1)
                root.Parse(path.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Append("--help").ToArray())
                    .Invoke(new InvocationConfiguration { Output = error, Error = error });
            error.WriteLine($"Run `{path} --help` for usage.");
            return 2;
        }
        OutputDirectory.Begin();
        int code = 1;
        try
        {
            // An --out given on the command line is checked (a directory, writable) and created
            // before the work starts; what a failed command created and left empty is removed.
            // (Not for --help, which writes nothing.)
            // `data clean` writes its copy elsewhere and renames it into place: its --out must not exist
            // beforehand (it may even lie inside the user's data, which is refused, never touched).
            if (ReferenceEquals(parse.Action, parse.CommandResult.Command.Action) && CommandPath(parse) != "influence data clean")
                foreach (var o in parse.CommandResult.Command.Options.OfType<Option<string>>())
                    if (o.Name == "--out" && parse.GetResult(o) is { Implicit: false } && parse.GetValue(o) is { } outPath)
                        OutputDirectory.Create("--out", outPath);
            code = parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
            return code;
        }
        catch (UsageException e)
        {
            error.WriteLine($"influence: {e.Message}");
            error.WriteLine($"Run `{CommandPath(parse)} --help` for usage.");
            return code = 2;
        }
        catch (InfluenceSharpException e)
        {
            error.WriteLine($"influence: error: {e.Message}");
            return code = 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"influence: error: {DescribeIoError(e)}");
            return code = 1;
        }
        catch (Exception e)
        {
            error.WriteLine($"influence: internal error (please report): {e}");
            return code = 1;
        }
        finally
        {
            if (code != 0) OutputDirectory.RemoveCreatedAfterFailure();
            ReadLocks.ReleaseAll();
        }
    }

    /// <summary>An I/O failure that no command anticipated, said in terms of the path and what is
    /// wrong with it rather than .NET's sentence.</summary>
    internal static string DescribeIoError(Exception e)
    {
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, "'([^']+)'");
        string path = m.Success ? m.Groups[1].Value : "";
        if (path.Length == 0) return e.Message;
        return e switch
        {
            FileNotFoundException when File.Exists(Path.GetDirectoryName(path) ?? "") => $"{path}: {Path.GetDirectoryName(path)} is a file, not a directory",
            FileNotFoundException when Directory.Exists(Path.GetDirectoryName(path) ?? "") => $"{path}: no such file (or the file system does not allow creating it there)",
            FileNotFoundException or DirectoryNotFoundException => $"{path}: a directory on the path does not exist (or is a file)",
            UnauthorizedAccessException when Directory.Exists(path) => $"{path}: is a directory where a file was expected",
            UnauthorizedAccessException => $"{path}: permission denied",
            IOException when e.Message.Contains("already exists", StringComparison.Ordinal) && File.Exists(path) => $"{path}: is a file where a directory was expected",
            IOException io => $"{path}: {OutputDirectory.Reason(io)}",
            _ => e.Message,
        };
    }

    /// <summary>"influence scores pairwise" for the command the parse ended in.</summary>
    static string CommandPath(ParseResult parse)
    {
        var names = new List<string>();
        for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
            names.Add(r.Command is RootCommand ? "influence" : r.Command.Name);
        names.Reverse();
        return string.Join(" ", names);
    }
}
