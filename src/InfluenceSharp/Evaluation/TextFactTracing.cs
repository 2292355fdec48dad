using System.Text.RegularExpressions;
using InfluenceSharp.Data;
using static TorchSharp.torch;

namespace InfluenceSharp.Evaluation;

/// <summary>
/// Fact tracing: for each planted fact asked as prompt/completion, where does its source document
/// rank among the training documents? A document's score is the sum of its sequences' scores (its
/// gradient is the sum of theirs); recall@k is the share of facts whose source is in the top k.
/// </summary>
public static class TextFactTracing
{
    /// <summary>Per-document scores [n_query, n_docs] from per-sequence scores [n_query, n_seq] of
    /// <paramref name="train"/> (a sequence that holds tokens of several documents adds its score to each).</summary>
    public static double[,] DocumentScores(Tensor sequenceScores, TextDataset train)
    {
        var s = sequenceScores.to(ScalarType.Float64).cpu();
        int nq = (int)s.shape[0], ns = (int)s.shape[1];
        if (ns != train.Count) throw new ArgumentException($"{ns} score columns for {train.Count} sequences");
        var v = s.data<double>().ToArray();
        var result = new double[nq, train.Documents.Count];
        for (int j = 0; j < ns; j++)
            foreach (int d in train.DocumentsOf(j))
                for (int q = 0; q < nq; q++) result[q, d] += v[q * ns + j];
        return result;
    }

    /// <summary>The 1-based rank of each fact's source document among the documents (highest score
    /// first; ties count against the source).</summary>
    public static int[] SourceRanks(double[,] documentScores, IReadOnlyList<PlantedFact> facts)
    {
        var ranks = new int[facts.Count];
        for (int q = 0; q < facts.Count; q++)
        {
            double own = documentScores[q, facts[q].Document];
            int better = 0;
            for (int d = 0; d < documentScores.GetLength(1); d++)
                if (d != facts[q].Document && documentScores[q, d] >= own) better++;
            ranks[q] = better + 1;
        }
        return ranks;
    }

    /// <summary>Share of ranks ≤ k.</summary>
    public static double RecallAt(int[] ranks, int k) => ranks.Length == 0 ? 0 : ranks.Count(r => r <= k) / (double)ranks.Length;

    /// <summary>BM25 scores [n_query, n_docs] (k1 = 1.2, b = 0.75, lowercase word terms): the lexical
    /// baseline of fact tracing.</summary>
    public static double[,] Bm25(IReadOnlyList<string> queries, IReadOnlyList<TextDocument> documents, double k1 = 1.2, double b = 0.75)
    {
        static string[] Terms(string s) => Regex.Matches(s.ToLowerInvariant(), @"\w+").Select(m => m.Value).ToArray();
        var docs = documents.Select(d => Terms(d.Text)).ToArray();
        double avg = docs.Average(d => (double)d.Length);
        var df = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var d in docs) foreach (var t in d.Distinct()) df[t] = df.GetValueOrDefault(t) + 1;
        var tf = docs.Select(d => d.GroupBy(t => t).ToDictionary(g => g.Key, g => g.Count())).ToArray();
        var result = new double[queries.Count, docs.Length];
        for (int q = 0; q < queries.Count; q++)
            foreach (var term in Terms(queries[q]).Distinct())
            {
                if (!df.TryGetValue(term, out int n)) continue;
                double idf = Math.Log(1 + (docs.Length - n + 0.5) / (n + 0.5));
                for (int d = 0; d < docs.Length; d++)
                    if (tf[d].TryGetValue(term, out int f))
                        result[q, d] += idf * f * (k1 + 1) / (f + k1 * (1 - b + b * docs[d].Length / avg));
            }
        return result;
    }
}
