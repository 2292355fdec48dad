using System.Text;

namespace InfluenceSharp.Data;

/// <summary>One document of a text corpus: its text, the file it came from and the line it starts on
/// (1-based; 0 for documents made in code).</summary>
public sealed record TextDocument(string Text, string Origin, int Line = 0)
{
    /// <summary><c>corpus.txt line 12</c>, or the origin alone for documents made in code.</summary>
    public string Where => Line > 0 ? $"{Path.GetFileName(Origin)} line {Line}" : Origin;
}

/// <summary>How a text file is cut into documents: one per non-empty line, or paragraphs separated by
/// blank lines.</summary>
public enum TextDocumentSplit { Lines, Blank }

/// <summary>Reads UTF-8 text files into documents.</summary>
public static class TextDocuments
{
    /// <summary>The documents of <paramref name="path"/>: with <see cref="TextDocumentSplit.Lines"/> every
    /// non-blank line; with <see cref="TextDocumentSplit.Blank"/> every run of non-blank lines, joined
    /// by '\n'. Trailing whitespace of lines is dropped (and a '\r' before '\n').</summary>
    public static List<TextDocument> Read(string path, TextDocumentSplit split)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        string text;
        try { text = File.ReadAllText(path, new UTF8Encoding(false, throwOnInvalidBytes: true)); }
        catch (DecoderFallbackException e) { throw new InfluenceSharpException($"{path}: not UTF-8 text ({e.Message})", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
        return Split(text, Path.GetFullPath(path), split);
    }

    /// <summary>The documents of <paramref name="text"/> (see <see cref="Read"/>).</summary>
    public static List<TextDocument> Split(string text, string origin, TextDocumentSplit split)
    {
        var lines = text.Split('\n').Select(l => l.TrimEnd()).ToArray();
        var docs = new List<TextDocument>();
        if (split == TextDocumentSplit.Lines)
        {
            for (int i = 0; i < lines.Length; i++)
                if (lines[i].Length > 0) docs.Add(new TextDocument(lines[i], origin, i + 1));
            return docs;
        }
        int start = -1;
        for (int i = 0; i <= lines.Length; i++)
        {
            bool blank = i == lines.Length || lines[i].Length == 0;
            if (!blank && start < 0) start = i;
            if (blank && start >= 0)
            {
                docs.Add(new TextDocument(string.Join('\n', lines[start..i]), origin, start + 1));
                start = -1;
            }
        }
        return docs;
    }

    /// <summary>Parses a docs= option (lines or blank).</summary>
    public static TextDocumentSplit ParseSplit(string? value, string what) => value switch
    {
        null or "blank" => TextDocumentSplit.Blank,
        "lines" => TextDocumentSplit.Lines,
        _ => throw new InfluenceSharpException($"{what}: docs={value}: choose lines (one document per line) or blank (documents separated by blank lines)"),
    };
}
