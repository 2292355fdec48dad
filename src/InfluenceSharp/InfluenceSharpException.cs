namespace InfluenceSharp;

/// <summary>An error caused by the user's input (files, arguments, data). The CLI prints its message
/// and exits non-zero without a stack trace.</summary>
public class InfluenceSharpException : Exception
{
    public InfluenceSharpException(string message) : base(message) { }
    public InfluenceSharpException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>The library's version: the package version it was built as (e.g. 0.1.0 or
/// 0.2.0-preview.1), without the source-control suffix.</summary>
public static class LibraryInfo
{
    public static string Version { get; } =
        (System.Reflection.CustomAttributeExtensions.GetCustomAttribute<System.Reflection.AssemblyInformationalVersionAttribute>(typeof(LibraryInfo).Assembly)
            ?.InformationalVersion ?? typeof(LibraryInfo).Assembly.GetName().Version?.ToString(3) ?? "0.0.0").Split('+')[0];
}
