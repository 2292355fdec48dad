using System.Globalization;
using InfluenceSharp.Data;

namespace InfluenceSharp.Evaluation;

/// <summary>Group labels for curation: one id in [0, NumGroups) per test example (the validation and
/// test examples) and, when known, per training example. <see cref="Names"/> has one display name per group.</summary>
public sealed record GroupLabels(int[]? Train, int[] Test, int NumGroups, IReadOnlyList<string> Names, string Source)
{
    /// <summary>
    /// From <paramref name="spec"/>: a file with one integer group id per line (blank lines and lines
    /// starting with '#' skipped), either one line per test example (validation + test, no training
    /// groups) or one per training example followed by one per test example; or a column expression:
    /// <c>class</c>, <c>tint</c> (tinted data), or a product such as <c>class*tint</c> (id = mixed radix,
    /// last column fastest). Errors name the file or column.
    /// </summary>
    public static GroupLabels Resolve(string spec, LabeledDataset train, LabeledDataset test)
    {
        if (File.Exists(spec)) return FromFile(spec, train.Count, test.Count);
        var terms = spec.Split('*', StringSplitOptions.TrimEntries);
        var known = new[] { "class", "tint" };
        foreach (var t in terms)
            if (!known.Contains(t))
                throw new InfluenceSharpException($"--groups {spec}: no such file, and '{t}' is not a group column (known: class, tint for tinted data, or products like class*tint)");
        int[] trainIds = new int[train.Count], testIds = new int[test.Count];
        IReadOnlyList<string> names = new[] { "" };
        int count = 1;
        foreach (var t in terms)
        {
            int card;
            int[] a, b;
            IReadOnlyList<string> labels;
            if (t == "class")
            {
                card = train.NumClasses; a = train.Labels; b = test.Labels; labels = train.ClassNamesOrIndices;
            }
            else
            {
                card = TintedData.TintCount; a = TintedData.Tints(train); b = TintedData.Tints(test); labels = new[] { "red", "green" };
            }
            for (int i = 0; i < trainIds.Length; i++) trainIds[i] = trainIds[i] * card + a[i];
            for (int i = 0; i < testIds.Length; i++) testIds[i] = testIds[i] * card + b[i];
            names = names.SelectMany(n => labels.Select(l => n.Length == 0 ? l : $"{n}/{l}")).ToArray();
            count *= card;
        }
        return new GroupLabels(trainIds, testIds, count, names, spec);
    }

    static GroupLabels FromFile(string path, int nTrain, int nTest)
    {
        var ids = new List<int>();
        int line = 0;
        foreach (var raw in File.ReadLines(path))
        {
            line++;
            var s = raw.Trim();
            if (s.Length == 0 || s.StartsWith('#')) continue;
            if (!int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int g))
                throw new InfluenceSharpException($"--groups {path}: line {line} '{s}' is not a non-negative integer group id");
            ids.Add(g);
        }
        int[]? train;
        int[] test;
        if (ids.Count == nTest) { train = null; test = ids.ToArray(); }
        else if (ids.Count == nTrain + nTest) { train = ids.Take(nTrain).ToArray(); test = ids.Skip(nTrain).ToArray(); }
        else
            throw new InfluenceSharpException($"--groups {path}: {ids.Count} group ids, but the run has {nTest} test examples and {nTrain} training examples: " +
                $"give {nTest} (validation and test) or {nTrain + nTest} (training, then validation and test)");
        int numGroups = ids.Count == 0 ? 0 : ids.Max() + 1;
        return new GroupLabels(train, test, numGroups,
            Enumerable.Range(0, numGroups).Select(g => g.ToString(CultureInfo.InvariantCulture)).ToArray(), Path.GetFullPath(path));
    }
}
