namespace InfluenceSharp;

/// <summary>An error caused by the user's input (files, arguments, data). The CLI prints its message
/// and exits non-zero without a stack trace.</summary>
public class InfluenceSharpException : Exception
{
    public InfluenceSharpException(string message) : base(message) { }
    public InfluenceSharpException(string message, Exception inner) : base(message, inner) { }
}

public static class LibraryInfo
{
    public static string Version { get; } =
        typeof(LibraryInfo).Assembly.GetName().Version?.ToString(3) ?? "0.0.0";
}
