using System.Globalization;
using System.Text;
using InfluenceSharp.Data;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Serve;

/// <summary>One reviewer's decision about a training example: remove it, keep it, or relabel it to
/// <see cref="Label"/> (a class name).</summary>
public sealed record Decision(int Index, string Source, string Verdict, string Label);

/// <summary>The decisions file of a run (RUN_DIR/decisions.csv): <c>index,source,decision,label</c>,
/// one row per example, as <c>influence data clean --from</c> reads it. Every change re-reads the file
/// and rewrites it atomically under a short exclusive lock of its own (".lock-decisions"), so two
/// explorers on one run never lose each other's decisions; readers never see a half-written file.</summary>
public sealed class DecisionsFile
{
    public const string FileName = "decisions.csv";
    public const string Header = "index,source,decision,label";
    static readonly string[] Verdicts = { "remove", "relabel", "keep" };

    readonly string runDir;
    readonly LabeledDataset train;

    public DecisionsFile(string runDir, LabeledDataset train)
    {
        this.runDir = System.IO.Path.GetFullPath(runDir);
        this.train = train;
    }

    public string Path => System.IO.Path.Combine(runDir, FileName);

    /// <summary>The decisions now in the file, by training index (none when there is no file).</summary>
    public SortedDictionary<int, Decision> Read()
    {
        var map = new SortedDictionary<int, Decision>();
        if (!File.Exists(Path)) return map;
        var records = CsvDataReader.ReadRecords(Path);
        foreach (var (line, f) in records.Skip(1))
        {
            if (f.Length < 3 || !int.TryParse(f[0].Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int i) || i >= train.Count)
                throw new InfluenceSharpException($"{Path}: line {line} is not a decision of this run (index,source,decision,label)");
            map[i] = new Decision(i, f[1], f[2].Trim().ToLowerInvariant(), f.Length > 3 ? f[3].Trim() : "");
        }
        return map;
    }

    /// <summary>Records (or, with verdict "clear", withdraws) a decision about example
    /// <paramref name="index"/>; <paramref name="label"/> is the new class (name or index) of a relabel.</summary>
    public Decision? Set(int index, string verdict, string? label)
    {
        if (index < 0 || index >= train.Count) throw new InfluenceSharpException($"index {index}: not a training example (0..{train.Count - 1})");
        verdict = verdict.Trim().ToLowerInvariant();
        if (verdict != "clear" && !Verdicts.Contains(verdict))
            throw new InfluenceSharpException($"decision '{verdict}': choose remove, relabel, keep or clear");
        string labelName = "";
        if (verdict == "relabel")
        {
            var names = train.ClassNamesOrIndices;
            int c = label is null ? -1 : names.ToList().FindIndex(n => string.Equals(n, label.Trim(), StringComparison.Ordinal));
            if (c < 0 && label is not null && int.TryParse(label, NumberStyles.None, CultureInfo.InvariantCulture, out int li) && li < train.NumClasses) c = li;
            if (c < 0) throw new InfluenceSharpException($"label '{label}': not a class ({string.Join(", ", names)})");
            if (c == train.Labels[index]) throw new InfluenceSharpException($"label '{names[c]}': example {index} already has it (choose keep)");
            labelName = names[c];
        }
        using var l = DirectoryLock.Acquire(runDir, "serve: recording a decision", "decisions", TimeSpan.FromSeconds(10));
        var map = Read();
        Decision? d = null;
        if (verdict == "clear") map.Remove(index);
        else map[index] = d = new Decision(index, SourceText.Of(train, index), verdict, labelName);
        var sb = new StringBuilder(Header).Append('\n');
        foreach (var x in map.Values)
            sb.Append(CultureInfo.InvariantCulture, $"{x.Index},{SourceText.Csv(x.Source)},{x.Verdict},{SourceText.Csv(x.Label)}\n");
        AtomicFile.WriteAllText(Path, sb.ToString());
        return d;
    }
}
