namespace InfluenceSharp.Data;

/// <summary>
/// A file of prompt/completion queries for a run trained on text: UTF-8, one query per line, the
/// prompt, a tab, then the completion (kept as written, leading spaces included: " Paris." is a
/// different completion from "Paris."). Blank lines are skipped.
/// </summary>
public static class PromptCompletionFile
{
    /// <summary>The (prompt, completion) pairs of <paramref name="path"/>, in file order; fails naming
    /// the file and line of a line without a tab or with an empty completion.</summary>
    public static List<(string Prompt, string Completion)> Read(string path)
    {
        string text = TextDocuments.ReadUtf8(path);
        var pairs = new List<(string, string)>();
        var lines = text.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (line.Trim().Length == 0) continue;
            int tab = line.IndexOf('\t');
            if (tab < 0) throw new InfluenceSharpException($"{path} line {i + 1}: expected a prompt, a tab, then the completion");
            var completion = line[(tab + 1)..];
            if (completion.Length == 0) throw new InfluenceSharpException($"{path} line {i + 1}: the completion (after the tab) is empty");
            pairs.Add((line[..tab], completion));
        }
        if (pairs.Count == 0) throw new InfluenceSharpException($"{path}: no queries (expected lines of prompt, tab, completion)");
        return pairs;
    }
}
