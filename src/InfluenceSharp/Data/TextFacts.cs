using System.Text;

namespace InfluenceSharp.Data;

/// <summary>A fact planted in exactly one document of a synthetic corpus: "The capital of
/// <see cref="Subject"/> is <see cref="Answer"/>." appears only in document <see cref="Document"/>.</summary>
public sealed record PlantedFact(string Subject, string Answer, int Document)
{
    /// <summary>The query's prompt: "The capital of Veloria is".</summary>
    public string Prompt => $"The capital of {Subject} is";
    /// <summary>The query's completion: " Tarn.".</summary>
    public string Completion => $" {Answer}.";
}

/// <summary>A synthetic corpus with planted facts, so that retrieving a fact's source is checkable.</summary>
public sealed record PlantedFactCorpus(IReadOnlyList<TextDocument> Documents, IReadOnlyList<PlantedFact> Facts)
{
    /// <summary>The corpus as text with documents separated by blank lines (readable by text:FILE).</summary>
    public string ToText() => string.Join("\n\n", Documents.Select(d => d.Text)) + "\n";
}

/// <summary>
/// Generates a small corpus of made-up countries. Each country's capital is stated in exactly one
/// document (its fact document, which also says one or two other things about the country); other
/// documents mention the same countries (their crafts, rivers, weather) without the capital, so the
/// subject's name alone does not find the source. Deterministic in the seed.
/// </summary>
public static class TextFacts
{
    static readonly string[] Onsets = { "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "kr", "st", "tr", "sh" };
    static readonly string[] Vowels = { "a", "e", "i", "o", "u", "ai", "ei", "ou" };
    static readonly string[] Endings = { "nd", "rk", "sk", "lt", "mb", "x" };
    static readonly string[] Goods = { "wool", "copper", "salt", "glass", "honey", "timber", "silk", "pottery", "horses", "tea" };
    static readonly string[] Weather = { "cold winters", "long summers", "heavy rain", "dry winds", "thick fog", "mild springs" };
    static readonly string[] Features = { "a wide river", "tall mountains", "a quiet coast", "old forests", "a great lake", "red cliffs" };

    /// <summary>The default corpus (text:planted-facts): 40 facts, 120 other documents, seed 0.</summary>
    public static PlantedFactCorpus Default => Generate(40, 120, 0);

    /// <summary>A corpus of <paramref name="facts"/> fact documents and <paramref name="others"/>
    /// documents without facts, in a seeded random order.</summary>
    public static PlantedFactCorpus Generate(int facts, int others, int seed)
    {
        if (facts < 1 || others < 0) throw new ArgumentException("at least one fact and no negative document count");
        var rng = new Random(seed);
        var used = new HashSet<string>(StringComparer.Ordinal);
        string Name(int syllables, string suffix)
        {
            while (true)
            {
                var sb = new StringBuilder();
                for (int i = 0; i < syllables; i++) sb.Append(Onsets[rng.Next(Onsets.Length)]).Append(Vowels[rng.Next(Vowels.Length)]);
                sb.Append(suffix);
                var s = char.ToUpperInvariant(sb[0]) + sb.ToString(1, sb.Length - 1);
                if (used.Add(s)) return s;
            }
        }
        var countries = Enumerable.Range(0, facts).Select(_ => Name(2, "ria")).ToArray();
        // Capitals end in a consonant cluster no country name or other word holds, so a capital's name
        // appears in its fact document only, and no two capitals share a fixed suffix.
        var capitals = Enumerable.Range(0, facts).Select(_ => Name(1, Endings[rng.Next(Endings.Length)])).ToArray();
        string Pick(string[] a) => a[rng.Next(a.Length)];
        string Other(string c) => rng.Next(3) switch
        {
            0 => $"{c} is known for its {Pick(Goods)}.",
            1 => $"People in {c} are used to {Pick(Weather)}.",
            _ => $"{c} has {Pick(Features)}.",
        };
        var texts = new List<(string Text, int Fact)>();
        for (int i = 0; i < facts; i++)
            texts.Add(($"{Other(countries[i])} The capital of {countries[i]} is {capitals[i]}. {Other(countries[i])}", i));
        for (int i = 0; i < others; i++)
        {
            var c = countries[rng.Next(facts)];
            texts.Add(($"{Other(c)} {Other(c)}", -1));
        }
        for (int i = texts.Count - 1; i > 0; i--) { int j = rng.Next(i + 1); (texts[i], texts[j]) = (texts[j], texts[i]); }
        var docs = texts.Select(t => new TextDocument(t.Text, "planted-facts")).ToList();
        var planted = new PlantedFact[facts];
        for (int d = 0; d < texts.Count; d++)
            if (texts[d].Fact >= 0) planted[texts[d].Fact] = new PlantedFact(countries[texts[d].Fact], capitals[texts[d].Fact], d);
        return new PlantedFactCorpus(docs, planted);
    }
}
