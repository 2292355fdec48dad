namespace InfluenceSharp.Cli;

/// <summary>Wrong command-line usage found only once a command runs (e.g. a query index outside the
/// run's query set): printed with the help hint, exit code 2, like a parse error.</summary>
public sealed class UsageException : Exception
{
    public UsageException(string message) : base(message) { }
}
