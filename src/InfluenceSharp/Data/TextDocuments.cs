using System.Text;

namespace InfluenceSharp.Data;

/// <summary>One document of a text corpus: its text, the file it came from and the line it starts on
/// (1-based; 0 for documents made in code).</summary>
public sealed record TextDocument(string Text, string Origin, int Line = 0)
{
    /// <summary><c>corpus.txt line 12</c>, or the origin alone for documents made in code.</summary>
    public string Where => Line > 0 ? $"{Path.GetFileName(Origin)} line {Line}" : Origin;
}

/// <summary>How a text file is cut into documents: one per non-empty line, paragraphs separated by
/// blank lines, or entries separated by lines holding only '%' (the fortune format).</summary>
public enum TextDocumentSplit { Lines, Blank, Percent }

/// <summary>Reads UTF-8 text files into documents.</summary>
public static class TextDocuments
{
    /// <summary>The documents of <paramref name="path"/>: with <see cref="TextDocumentSplit.Lines"/> every
    /// non-blank line; with <see cref="TextDocumentSplit.Blank"/> every run of non-blank lines, joined
    /// by '\n'. Trailing whitespace of lines is dropped (and a '\r' before '\n').</summary>
    public static List<TextDocument> Read(string path, TextDocumentSplit split) => Split(ReadUtf8(path), Path.GetFullPath(path), split);

    /// <summary>The whole of <paramref name="path"/> as strict UTF-8; a missing, unreadable or
    /// non-UTF-8 file is refused naming it.</summary>
    public static string ReadUtf8(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        try { return File.ReadAllText(path, new UTF8Encoding(false, throwOnInvalidBytes: true)); }
        catch (DecoderFallbackException e) { throw new InfluenceSharpException($"{path}: not UTF-8 text ({e.Message})", e); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new InfluenceSharpException($"{path}: cannot read ({e.Message})", e); }
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
        if (split == TextDocumentSplit.Percent)
        {
            // An entry keeps its inner blank lines; blank lines at its ends are dropped.
            int from = 0;
            for (int i = 0; i <= lines.Length; i++)
            {
                if (i < lines.Length && lines[i] != "%") continue;
                int a = from, b = i;
                while (a < b && lines[a].Length == 0) a++;
                while (b > a && lines[b - 1].Length == 0) b--;
                if (b > a) docs.Add(new TextDocument(string.Join('\n', lines[a..b]), origin, a + 1));
                from = i + 1;
            }
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

    /// <summary>Parses a docs= option (lines, blank or percent); null gives <paramref name="fallback"/>.</summary>
    public static TextDocumentSplit ParseSplit(string? value, string what, TextDocumentSplit fallback = TextDocumentSplit.Blank) => value switch
    {
        null => fallback,
        "blank" => TextDocumentSplit.Blank,
        "lines" => TextDocumentSplit.Lines,
        "percent" => TextDocumentSplit.Percent,
        _ => throw new InfluenceSharpException($"{what}: docs={value}: choose lines (one document per line), blank (documents separated by blank lines) or percent (entries separated by lines holding only %, the fortune format)"),
    };

    /// <summary>The docs= text of a split.</summary>
    public static string Name(TextDocumentSplit split) => split switch
    {
        TextDocumentSplit.Lines => "lines", TextDocumentSplit.Percent => "percent", _ => "blank",
    };
}
