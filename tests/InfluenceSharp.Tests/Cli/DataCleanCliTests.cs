using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using InfluenceSharp.Data;
using InfluenceSharp.Reporting;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>Results traced to the user's files and `influence data clean`, end to end through the CLI:
/// an image folder and a CSV table with flipped labels → train → detect-mislabeled → data clean.</summary>
[Collection("cli")]
public class DataCleanCliTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    /// <summary>The --data spec of the cleaned copy, from data clean's output.</summary>
    static string SpecOf(string output) => System.Text.RegularExpressions.Regex.Match(output, "--data '([^']+)'").Groups[1].Value;

    /// <summary>Hash of every file under a folder (relative path, bytes, modification time) or of one file.</summary>
    static string TreeHash(string path)
    {
        using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var files = File.Exists(path) ? new[] { path } : Directory.GetFiles(path, "*", SearchOption.AllDirectories).OrderBy(f => f, StringComparer.Ordinal).ToArray();
        foreach (var f in files)
        {
            h.AppendData(Encoding.UTF8.GetBytes(Path.GetRelativePath(path, f) + "\n"));
            h.AppendData(File.ReadAllBytes(f));
            h.AppendData(BitConverter.GetBytes(File.GetLastWriteTimeUtc(f).Ticks));
        }
        return Convert.ToHexStringLower(h.GetHashAndReset());
    }

    /// <summary>The rows of suspicious-M.csv: (rank, index, given label, source).</summary>
    static List<(int Rank, int Index, string Given, string Source)> Suspicious(string csv)
    {
        var records = CsvDataReader.ReadRecords(csv);
        var header = records[0].Fields;
        int Col(string n) => Array.IndexOf(header, n);
        return records.Skip(1).Select(r => (int.Parse(r.Fields[Col("rank")], CultureInfo.InvariantCulture), int.Parse(r.Fields[Col("index")], CultureInfo.InvariantCulture),
            r.Fields[Col("given_label")], r.Fields[Col("source")])).ToList();
    }

    /// <summary>Three Fashion-MNIST classes as an image folder of 28x28 PNGs, 24 per class, with
    /// <paramref name="flipped"/> images of each class put in the next class's folder.</summary>
    static void FlippedImageFolder(string root, int flipped)
    {
        var train = (ImageDataset)Embedded.Split.Train;
        string[] names = { "bag", "sneaker", "trouser" };
        int[] classes = { 8, 7, 1 };
        for (int c = 0; c < 3; c++)
        {
            var members = Enumerable.Range(0, train.Count).Where(i => train.Labels[i] == classes[c]).Take(24).ToArray();
            for (int k = 0; k < members.Length; k++)
            {
                string folder = Path.Combine(root, names[k < flipped ? (c + 1) % 3 : c]);
                Directory.CreateDirectory(folder);
                File.WriteAllBytes(Path.Combine(folder, $"{names[c]}-{k:D2}.png"), PngWriter.Encode(train.DisplayPixels(members[k]), 28, 28, 1));
            }
        }
    }

    [Fact]
    public void ImageFolderDetectThenCleanLeavesOutExactlyTheFlaggedFiles()
    {
        using var dir = new TempDir();
        string root = dir.File("photos"), run = dir.File("run");
        FlippedImageFolder(root, flipped: 3);
        var r = Run("train", "--data", "imagefolder:" + root, "--model", "logreg", "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--out", run, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity", "--top", "10", "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);

        // The sources name the files: each listed file decodes to the training example's pixels.
        var data = RunData.For(Checkpoint.List(run)[^1]);
        var train = (ImageDataset)data.Train;
        var rows = Suspicious(Path.Combine(run, "detect", "suspicious-identity.csv"));
        Assert.Equal(Math.Min(100, train.Count), rows.Count);
        foreach (var (_, index, given, source) in rows)
        {
            string file = Path.Combine(root, source);
            Assert.True(File.Exists(file), source);
            Assert.Equal(train.DisplayPixels(index), ImageFile.Load(file, 1).Pixels);
            Assert.Equal(given, source.Split('/')[0]);   // the given label is the file's class folder
        }
        // The seeded split is re-derived identically: a second load gives the same sources.
        Assert.Equal(train.Sources!.Select(s => s.Text), RunData.For(Checkpoint.List(run)[^1]).Train.Sources!.Select(s => s.Text));
        Assert.DoesNotContain(train.Sources!, s => data.Test.Sources!.Any(t => t.Text == s.Text));
        var json = File.ReadAllText(Path.Combine(run, "detect", "detection.json"));
        Assert.Contains(rows[0].Source, json);
        // The report shows the files under the suspicious images.
        r = Run("report", "--run", run);
        Assert.True(r.Code == 0, r.Err);
        var html = File.ReadAllText(Path.Combine(run, "report.html"));
        foreach (var row in rows.Take(10)) Assert.Contains($"<td>{row.Source}</td>", html);
        // explain names the proponents' files too.
        r = Run("explain", "--run", run, "--query", "0", "--methods", "identity", "--top", "3", "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        var explain = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "explain", "explain-identity.json"))).RootElement[0];
        Assert.Equal(data.Test.SourceOf(0)!.Text, explain.GetProperty("source").GetProperty("text").GetString());
        foreach (var p in explain.GetProperty("proponents").EnumerateArray())
            Assert.Equal(train.SourceOf(p.GetProperty("index").GetInt32())!.Name, p.GetProperty("source").GetProperty("path").GetString());

        string before = TreeHash(root);
        string outDir = dir.File("clean");
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "5", "--out", outDir, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(before, TreeHash(root));   // the original is untouched

        var original = Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(root, f).Replace('\\', '/')).ToHashSet();
        var cleaned = Directory.GetFiles(Path.Combine(outDir, "photos"), "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(Path.Combine(outDir, "photos"), f).Replace('\\', '/')).ToHashSet();
        var flagged = rows.Where(x => x.Rank <= 5).Select(x => x.Source).ToHashSet();
        Assert.Equal(5, flagged.Count);
        Assert.Equal(flagged, original.Except(cleaned).ToHashSet());
        Assert.Subset(original, cleaned);
        foreach (var f in cleaned)
            Assert.Equal(File.ReadAllBytes(Path.Combine(root, f)), File.ReadAllBytes(Path.Combine(outDir, "photos", f)));
        var changes = CsvDataReader.ReadRecords(Path.Combine(outDir, DataCleaner.ChangesFile));
        Assert.Equal("index,source,decision,new_label,method,score,rank,given_label,predicted_label", string.Join(",", changes[0].Fields));
        Assert.Equal(flagged, changes.Skip(1).Select(c => c.Fields[1]).ToHashSet());
        Assert.All(changes.Skip(1), c => Assert.Equal("identity", c.Fields[4]));
        Assert.Contains("imagefolder:" + Path.Combine(outDir, "photos"), r.Out);

        // The cleaned copy is a data set: the same classes, five fewer images.
        r = Run("data", "info", "--data", "imagefolder:" + Path.Combine(outDir, "photos"));
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("classes: bag, sneaker, trouser", r.Out);

        // --keep-split: the copy holds the run's test set as test/, so a model trained on it is tested on the same images.
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "5", "--out", dir.File("split"), "--keep-split", "-q");
        Assert.True(r.Code == 0, r.Err);
        var kept = DataSource.Load(SpecOf(r.Out));
        Assert.Equal(data.Test.Sources!.Select(x => "test/" + x.Text), kept.Test.Sources!.Select(x => x.Text));
        Assert.Equal(data.Test.Fingerprint(), kept.Test.Fingerprint());
        Assert.Equal(train.Count - 5, kept.Train.Count);
        Assert.Equal(before, TreeHash(root));

        // An existing --out is refused, and replaced with --overwrite (here: quarantined as well).
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect", "suspicious-identity.csv"), "--top", "5", "--out", outDir, "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("--overwrite", r.Err);
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect", "suspicious-identity.csv"), "--top", "5", "--out", outDir, "--overwrite", "--quarantine", "-q");
        Assert.True(r.Code == 0, r.Err);
        var quarantined = Directory.GetFiles(Path.Combine(outDir, "quarantine"), "*.png", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(Path.Combine(outDir, "quarantine"), f).Replace('\\', '/')).ToHashSet();
        Assert.Equal(flagged, quarantined);
        var why = CsvDataReader.ReadRecords(Path.Combine(outDir, "quarantine", "quarantine.csv"));
        Assert.Equal(6, why.Count);
        Assert.Equal(before, TreeHash(root));

        // Refusals: --out inside the data; a folder that is not an earlier clean; no leftovers beside --out.
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "5", "--out", Path.Combine(root, "cleaned"), "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("inside the data", r.Err);
        Assert.False(Directory.Exists(Path.Combine(root, "cleaned")));
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "5", "--out", run, "--overwrite", "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("was not written by `influence data clean`", r.Err);
        Assert.Empty(Directory.GetDirectories(dir.Path, ".clean.*"));
        // A detection whose listed sources are not the run's examples is refused.
        string other = dir.File("other-detect");
        Directory.CreateDirectory(other);
        foreach (var f in Directory.GetFiles(Path.Combine(run, "detect"))) File.Copy(f, Path.Combine(other, Path.GetFileName(f)));
        string susp = Path.Combine(other, "suspicious-identity.csv");
        File.WriteAllText(susp, File.ReadAllText(susp).Replace(rows[0].Source, "bag/elsewhere.png"));
        r = Run("data", "clean", "--run", run, "--from", other, "--top", "5", "--out", dir.File("clean5"), "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("a detection of other data?", r.Err);
        Assert.Equal(before, TreeHash(root));
    }

    [Fact]
    public void DecisionsRelabelMoveFilesToTheNewClassFolder()
    {
        using var dir = new TempDir();
        string root = dir.File("photos"), run = dir.File("run");
        FlippedImageFolder(root, flipped: 2);
        var r = Run("train", "--data", "imagefolder:" + root, "--model", "logreg", "--epochs", "1", "--batch-size", "16", "--out", run, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        var train = RunData.For(Checkpoint.List(run)[^1]).Train;
        // The first training file of a prefix (the seeded split decides which files are training files).
        (int Index, string Rel) Find(string prefix) => train.Sources!.Select((s, i) => (i, s.Text)).First(x => x.Text.StartsWith(prefix, StringComparison.Ordinal));
        // A bag image that sits in sneaker/ (flipped): relabel it to bag; remove a trouser, keep a bag.
        var (a, relA) = Find("sneaker/bag-");
        var (b, relB) = Find("trouser/trouser-");
        var (c, relC) = Find("bag/bag-");
        File.WriteAllText(dir.File("decisions.csv"), $"index,source,decision,label\n{a},{relA},relabel,bag\n{b},{relB},remove,\n{c},{relC},keep,\n");
        string before = TreeHash(root);
        r = Run("data", "clean", "--run", run, "--from", dir.File("decisions.csv"), "--out", dir.File("clean"), "-q");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(before, TreeHash(root));
        string copy = Path.Combine(dir.File("clean"), "photos");
        string nameA = relA.Split('/')[1];
        Assert.True(File.Exists(Path.Combine(copy, "bag", nameA)));
        Assert.False(File.Exists(Path.Combine(copy, "sneaker", nameA)));
        Assert.Equal(File.ReadAllBytes(Path.Combine(root, relA)), File.ReadAllBytes(Path.Combine(copy, "bag", nameA)));
        Assert.False(File.Exists(Path.Combine(copy, relB)));
        Assert.True(File.Exists(Path.Combine(copy, relC)));
        Assert.Equal(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Length - 1, Directory.GetFiles(copy, "*", SearchOption.AllDirectories).Length);

        // A decision whose source is not the run's example at that index is refused.
        File.WriteAllText(dir.File("wrong.csv"), $"index,source,decision\n{a},{relC},remove\n");
        r = Run("data", "clean", "--run", run, "--from", dir.File("wrong.csv"), "--out", dir.File("clean2"), "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains($"{relA} in the run", r.Err);
        Assert.False(Directory.Exists(dir.File("clean2")));

        // A curation ranking (most detrimental first): the first K rows are left out.
        string curate = dir.File("curate");
        Directory.CreateDirectory(curate);
        string Ranking(params int[] order) => "rank,index,score,label,group,source\n" + string.Concat(order.Select((i, r) =>
            $"{r + 1},{i},{-10 + r},{train.Labels[i]},,{SourceText.Csv(SourceText.Of(train, i))}\n"));
        File.WriteAllText(Path.Combine(curate, "ranking-identity.csv"), Ranking(c, b, a));
        r = Run("data", "clean", "--run", run, "--from", curate, "--top", "2", "--out", dir.File("clean3"), "-q");
        Assert.True(r.Code == 0, r.Err);
        string copy3 = Path.Combine(dir.File("clean3"), "photos");
        Assert.False(File.Exists(Path.Combine(copy3, relC)));
        Assert.False(File.Exists(Path.Combine(copy3, relB)));
        Assert.True(File.Exists(Path.Combine(copy3, relA)));
        // A ranking whose sources are not the run's is refused.
        File.WriteAllText(Path.Combine(curate, "ranking-identity.csv"), Ranking(c).Replace(relC, relB));
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(curate, "ranking-identity.csv"), "--top", "1", "--out", dir.File("clean4"), "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("a curation of other data?", r.Err);
        Assert.Equal(before, TreeHash(root));
    }

    /// <summary>people.csv: age and income, label "old" for age over 45, else "young"; every 10th row flipped.</summary>
    static string FlippedCsv(string path, int n)
    {
        var rng = new Random(TestSeed.For());
        var sb = new StringBuilder("age,income,label\r\n");
        for (int i = 0; i < n; i++)
        {
            int age = 20 + rng.Next(50);
            bool old = age > 45;
            if (i % 10 == 3) old = !old;
            sb.Append(CultureInfo.InvariantCulture, $"{age},{rng.Next(1000, 9000) / 10.0},{(old ? "old" : "young")}\r\n");
        }
        File.WriteAllText(path, sb.ToString());
        return sb.ToString();
    }

    [Fact]
    public void CsvDetectThenCleanLeavesOutExactlyTheFlaggedRows()
    {
        using var dir = new TempDir();
        string file = dir.File("people.csv"), run = dir.File("run");
        FlippedCsv(file, 120);
        var r = Run("train", "--data", "csv:" + file, "--epochs", "5", "--batch-size", "16", "--lr", "0.05", "--out", run, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity", "--top", "8", "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);

        var split = DataSource.Load(RunRecord.TryRead(run)!.DataSource!);
        var train = split.Train;
        var lines = File.ReadAllLines(file);
        var rows = Suspicious(Path.Combine(run, "detect", "suspicious-identity.csv"));
        foreach (var (_, index, given, source) in rows)
        {
            // "people.csv row R (line L)": data row R (header not counted) is the file's line L = R + 1.
            var m = System.Text.RegularExpressions.Regex.Match(source, @"^people\.csv row (\d+) \(line (\d+)\)$");
            Assert.True(m.Success, source);
            int row = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), line = int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
            Assert.Equal(row + 1, line);
            var cells = lines[line - 1].Split(',');
            Assert.Equal(given, cells[2]);
            // The row's standardised features are the training example's inputs.
            var x = ((FloatDataset)train).Values.AsSpan(index * 2, 2).ToArray();
            for (int j = 0; j < 2; j++)
                Assert.Equal((double.Parse(cells[j], CultureInfo.InvariantCulture) - split.Scaling!.Mean[j]) / split.Scaling.Std[j], x[j], 4);
        }

        string before = TreeHash(file);
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect", "detection.json"), "--top", "6", "--out", dir.File("clean"), "-q");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(before, TreeHash(file));
        var flaggedLines = rows.Where(x => x.Rank <= 6)
            .Select(x => int.Parse(System.Text.RegularExpressions.Regex.Match(x.Source, @"\(line (\d+)\)").Groups[1].Value, CultureInfo.InvariantCulture)).ToHashSet();
        Assert.Equal(6, flaggedLines.Count);
        Assert.Equal(string.Join(";", rows.Take(6).Select(x => x.Source)), string.Join(";", CsvDataReader.ReadRecords(Path.Combine(dir.File("clean"), DataCleaner.ChangesFile)).Skip(1).Select(c => c.Fields[1])));
        string expected = string.Concat(File.ReadAllText(file).Split("\r\n").Select((l, i) => (l, i)).Where(p => !flaggedLines.Contains(p.i + 1)).Select(p => p.l + "\r\n"));
        expected = expected[..^2];   // the split's last element is the empty text after the final line break
        Assert.Equal(expected, File.ReadAllText(Path.Combine(dir.File("clean"), "people.csv")));
        Assert.StartsWith("age,income,label\r\n", expected);
        Assert.Contains("csv:" + Path.Combine(dir.File("clean"), "people.csv"), r.Out);

        // --keep-split: the run's test rows in people-test.csv, the others (cleaned) in people.csv.
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "6", "--out", dir.File("split"), "--keep-split", "-q");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("?label=label&test=", SpecOf(r.Out));
        var kept = DataSource.Load(SpecOf(r.Out));
        Assert.Equal(train.Count - 6, kept.Train.Count);
        Assert.Equal(split.Test.Sources!.Select(x => lines[x.Line - 1]), File.ReadAllLines(Path.Combine(dir.File("split"), "people-test.csv")).Skip(1));
        Assert.Equal("age,income,label", File.ReadAllLines(Path.Combine(dir.File("split"), "people.csv"))[0]);

        // Relabelling a row rewrites its label cell only.
        var first = rows[0];
        File.WriteAllText(dir.File("decisions.csv"), $"index,source,decision,label\n{first.Index},\"{first.Source}\",relabel,{(first.Given == "old" ? "young" : "old")}\n");
        r = Run("data", "clean", "--run", run, "--from", dir.File("decisions.csv"), "--out", dir.File("clean2"), "-q");
        Assert.True(r.Code == 0, r.Err);
        int fl = int.Parse(System.Text.RegularExpressions.Regex.Match(first.Source, @"\(line (\d+)\)").Groups[1].Value, CultureInfo.InvariantCulture);
        var relabeled = File.ReadAllLines(Path.Combine(dir.File("clean2"), "people.csv"));
        Assert.Equal(lines.Length, relabeled.Length);
        for (int i = 0; i < lines.Length; i++)
            if (i != fl - 1) Assert.Equal(lines[i], relabeled[i]);
            else Assert.Equal(string.Join(",", lines[i].Split(',')[..2]) + "," + (first.Given == "old" ? "young" : "old"), relabeled[i]);
        Assert.Equal(before, TreeHash(file));
    }

    [Fact]
    public void BuiltInDataIsRefusedWithWhatToDoInstead()
    {
        using var dir = new TempDir();
        string run = dir.File("run");
        var r = Run("train", "--data", "embedded", "--train-count", "100", "--model", "logreg", "--epochs", "1", "--out", run, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity", "--top", "4", "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        // Embedded sources name the file and the index in it (the balanced subset keeps the original index).
        var rows = Suspicious(Path.Combine(run, "detect", "suspicious-identity.csv"));
        var full = Embedded.Split.Train;
        var train = RunData.For(Checkpoint.List(run)[^1]).Train;
        foreach (var (_, index, _, source) in rows)
        {
            var m = System.Text.RegularExpressions.Regex.Match(source, @"^embedded:train-images-idx3-ubyte\.gz #(\d+)$");
            Assert.True(m.Success, source);
            Assert.Equal(full.DisplayPixels(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)), train.DisplayPixels(index));
        }
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--top", "3", "--out", dir.File("clean"), "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("export the data as an image folder", r.Err);
        Assert.False(Directory.Exists(dir.File("clean")));
        r = Run("data", "clean", "--run", run, "--from", Path.Combine(run, "detect"), "--out", dir.File("clean"), "-q");
        Assert.Equal(2, r.Code);
        Assert.Contains("--top K", r.Err);
    }
}
