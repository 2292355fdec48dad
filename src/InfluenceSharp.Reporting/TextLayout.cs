namespace InfluenceSharp.Reporting;

/// <summary>Fitting text of the built-in font into a width.</summary>
internal static class TextLayout
{
    /// <summary>Greedy word wrap; a word wider than the width is cut with <see cref="Truncate"/>.</summary>
    public static string[] Wrap(string text, int width, int scale)
    {
        var lines = new List<string>();
        foreach (var para in text.Split('\n'))
        {
            string cur = "";
            foreach (var word in para.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            {
                string next = cur.Length == 0 ? word : cur + " " + word;
                if (Canvas.MeasureText(next, scale).Width <= width) { cur = next; continue; }
                if (cur.Length > 0) lines.Add(cur);
                cur = Truncate(word, width, scale);
            }
            lines.Add(cur);
        }
        return lines.ToArray();
    }

    /// <summary>The text, or its longest prefix that fits followed by "..".</summary>
    public static string Truncate(string text, int width, int scale)
    {
        if (Canvas.MeasureText(text, scale).Width <= width) return text;
        for (int n = text.Length - 1; n > 0; n--)
        {
            string t = text[..n] + "..";
            if (Canvas.MeasureText(t, scale).Width <= width) return t;
        }
        return "";
    }
}
