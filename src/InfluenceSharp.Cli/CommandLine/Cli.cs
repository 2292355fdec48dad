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
        };
        // --version prints the library's version, not the assembly's informational version.
        foreach (var v in root.Options.OfType<VersionOption>()) v.Action = new PrintVersion();
        return root;
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
            var command = parse.CommandResult.Command;
            string path = CommandPath(parse);
            // A group (`influence`, `scores`, `data`, `evaluate`) without its subcommand: list them.
            if (command.Action is null && command.Subcommands.Count > 0 && parse.Errors.Count == 1)
                root.Parse(path.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1).Append("--help").ToArray())
                    .Invoke(new InvocationConfiguration { Output = error, Error = error });
            error.WriteLine($"Run `{path} --help` for usage.");
            return 2;
        }
        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = output, Error = error, EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            error.WriteLine($"influence: {e.Message}");
            error.WriteLine($"Run `{CommandPath(parse)} --help` for usage.");
            return 2;
        }
        catch (InfluenceSharpException e)
        {
            error.WriteLine($"influence: error: {e.Message}");
            return 1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error.WriteLine($"influence: error: {e.Message}");
            return 1;
        }
        catch (Exception e)
        {
            error.WriteLine($"influence: internal error (please report): {e}");
            return 1;
        }
        finally { ReadLocks.ReleaseAll(); }
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
