using InfluenceSharp.Data;
using InfluenceSharp.Reporting;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Data;

/// <summary>imagefolder:, tensors: and csv: data: well-formed, corrupt and truncated inputs.</summary>
public class UserDataReaderTests
{
    // ---- imagefolder ----

    [Fact]
    public void ImageFolderResizesKeepsFolderNamesSplitsAndCaches()
    {
        using var dir = new TempDir();
        string root = dir.File("pets");
        UserDataFiles.ImageFolder(root, new[] { "dog", "cat", "bird" }, 10, TestSeed.Random(), rgb: false, (6, 5), (9, 9));
        var progress = new List<string>();
        var split = DataSource.Load("imagefolder:" + root, new DataOptions { ImageSize = (4, 4) }, new Progress(u => progress.Add(u.Label)));
        Assert.Equal(new[] { "bird", "cat", "dog" }, split.Train.ClassNames);      // ordinal order of the folder names
        Assert.Equal((1, 4, 4), (split.Train.Channels, split.Train.Height, split.Train.Width));
        Assert.Equal(24, split.Train.Count);                                        // 20% of each class held out
        Assert.Equal(6, split.Test.Count);
        Assert.Equal(new[] { 2, 2, 2 }, Enumerable.Range(0, 3).Select(c => split.Test.Labels.Count(l => l == c)));
        Assert.Equal($"imagefolder:{Path.GetFullPath(root)}?size=4x4&channels=1&test-fraction=0.2&split-seed=0", split.Source);
        Assert.Contains("decoding images", progress);
        var cache = Directory.GetFiles(Path.Combine(root, ImageFolderReader.CacheDirName), "*.safetensors");
        Assert.Single(cache);

        // The recorded spec rebuilds the same data, from the cache (no decoding).
        progress.Clear();
        var again = DataSource.Load(split.Source, progress: new Progress(u => progress.Add(u.Label)));
        Assert.Empty(progress);
        Assert.Equal(split.Train.Fingerprint(), again.Train.Fingerprint());
        Assert.Equal(split.Test.Fingerprint(), again.Test.Fingerprint());
        Assert.Equal(split.Source, again.Source);

        // A changed image invalidates the cache.
        var f = Path.Combine(root, "dog", "000.png");
        File.WriteAllBytes(f, PngWriter.Encode(new byte[6 * 5], 5, 6, 1));
        File.SetLastWriteTimeUtc(f, DateTime.UtcNow.AddMinutes(1));
        var changed = DataSource.Load(split.Source, progress: new Progress(u => progress.Add(u.Label)));
        Assert.Contains("decoding images", progress);
        Assert.NotEqual(split.Train.Fingerprint() + split.Test.Fingerprint(), changed.Train.Fingerprint() + changed.Test.Fingerprint());
    }

    sealed class Progress(Action<InfluenceSharp.Diagnostics.ProgressUpdate> a) : IProgress<InfluenceSharp.Diagnostics.ProgressUpdate>
    {
        public void Report(InfluenceSharp.Diagnostics.ProgressUpdate value) => a(value);
    }

    [Fact]
    public void ImageFolderTrainTestLayoutAndChannels()
    {
        using var dir = new TempDir();
        string root = dir.File("d");
        var rng = TestSeed.Random();
        UserDataFiles.ImageFolder(Path.Combine(root, "train"), new[] { "a", "b" }, 4, rng, rgb: true, (5, 5));
        UserDataFiles.ImageFolder(Path.Combine(root, "val"), new[] { "b" }, 3, rng, rgb: false, (5, 5));
        var split = DataSource.Load("imagefolder:" + root);
        Assert.Equal((8, 3), (split.Train.Count, split.Test.Count));
        Assert.Equal(3, split.Train.Channels);                       // one RGB image makes the set RGB
        Assert.All(split.Test.Labels, l => Assert.Equal(1, l));     // val/b is class 1 of train's a, b
        Assert.DoesNotContain("test-fraction", split.Source);
        var grey = DataSource.Load("imagefolder:" + root, new DataOptions { Channels = 1 });
        Assert.Equal(1, grey.Train.Channels);

        // A test class the training data lacks is refused, naming the folder.
        UserDataFiles.ImageFolder(Path.Combine(root, "val"), new[] { "zebra" }, 1, rng, sizes: (5, 5));
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root));
        Assert.Contains(Path.Combine(root, "val", "zebra"), e.Message);
    }

    [Fact]
    public void ImageFolderRefusesMixedSizesWithoutImageSizeBadAndTruncatedImagesNamingTheFile()
    {
        using var dir = new TempDir();
        string root = dir.File("d");
        UserDataFiles.ImageFolder(root, new[] { "a", "b" }, 3, TestSeed.Random(), false, (4, 4), (7, 3));
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root));
        Assert.Contains("--image-size", e.Message);
        Assert.Contains("4x4", e.Message);

        string bad = Path.Combine(root, "b", "broken.png");
        File.WriteAllText(bad, "this is not a PNG");
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root, new DataOptions { ImageSize = (4, 4) }));
        Assert.Contains(bad, e.Message);

        var good = File.ReadAllBytes(Path.Combine(root, "a", "000.png"));
        File.WriteAllBytes(bad, good[..(good.Length / 2)]);           // truncated
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root, new DataOptions { ImageSize = (4, 4) }));
        Assert.Contains(bad, e.Message);

        File.Delete(bad);
        Directory.CreateDirectory(Path.Combine(root, "empty"));
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("imagefolder:" + root, new DataOptions { ImageSize = (4, 4) }));
        Assert.Contains(Path.Combine(root, "empty"), e.Message);
    }

    [Fact]
    public void ResizeMatchesTorchBilinearInterpolation()
    {
        var rng = TestSeed.Random();
        var px = new byte[3 * 7 * 5];
        rng.NextBytes(px);
        var img = new ImageFile(5, 7, 3, px);
        foreach (var (h, w) in new[] { (4, 4), (13, 9), (7, 2) })
        {
            var r = img.Resize(h, w);
            using var x = torch.tensor(px, new long[] { 1, 3, 7, 5 }).to_type(ScalarType.Float32);
            using var y = nn.functional.interpolate(x, new long[] { h, w }, mode: InterpolationMode.Bilinear, align_corners: false);
            var expected = y.round().clamp(0, 255).to_type(ScalarType.Byte).data<byte>().ToArray();
            Assert.Equal((w, h, 3), (r.Width, r.Height, r.Channels));
            var diff = expected.Zip(r.Pixels, (a, b) => Math.Abs(a - b)).Max();
            Assert.True(diff <= 1, $"{h}x{w}: max difference {diff} from torch ({TestSeed.Describe()})");
        }
        Assert.Same(img, img.Resize(7, 5));
    }

    // ---- tensors ----

    [Fact]
    public void TensorsSafetensorsFloatFeaturesWithInFileTestSetAndUint8Images()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        var x = Enumerable.Range(0, 40 * 3).Select(_ => (float)(rng.NextDouble() * 100 - 50)).ToArray();
        var y = Enumerable.Range(0, 40).Select(i => (long)(i % 3)).ToArray();
        string f = dir.File("d.safetensors");
        SafeTensors.Save(f, new Dictionary<string, Tensor>
        {
            ["X"] = torch.tensor(x, new long[] { 40, 3 }), ["y"] = torch.tensor(y),
            ["X_test"] = torch.tensor(x[..30], new long[] { 10, 3 }), ["y_test"] = torch.tensor(y[..10]),
        });
        var split = DataSource.Load("tensors:" + f);
        var train = Assert.IsType<FloatDataset>(split.Train);
        Assert.True(train.IsFlat);
        Assert.Equal(x, train.Values);                                   // as given, not normalised
        Assert.Equal(10, split.Test.Count);
        Assert.Equal(3, split.Train.NumClasses);
        using (var inputs = train.Inputs(new[] { 1 })) Assert.Equal(x[3..6], inputs.data<float>().ToArray());

        // uint8 [N, H, W] images are an ImageDataset with one channel; no test tensors: a seeded split.
        string g = dir.File("img.safetensors");
        var px = new byte[20 * 4 * 4];
        rng.NextBytes(px);
        SafeTensors.Save(g, new Dictionary<string, Tensor> { ["images"] = torch.tensor(px, new long[] { 20, 4, 4 }), ["labels"] = torch.tensor(Enumerable.Range(0, 20).Select(i => (long)(i % 2)).ToArray()) });
        var imgs = DataSource.Load($"tensors:{g}?x=images&y=labels", new DataOptions { TestFraction = 0.5 });
        Assert.IsType<ImageDataset>(imgs.Train);
        Assert.Equal((10, 10, 1), (imgs.Train.Count, imgs.Test.Count, imgs.Train.Channels));
        Assert.Equal(imgs.Train.Fingerprint(), DataSource.Load(imgs.Source).Train.Fingerprint());
    }

    [Fact]
    public void TensorsNpyPairAndNpzWithSeparateTestFile()
    {
        using var dir = new TempDir();
        var x = Enumerable.Range(0, 12 * 2 * 3 * 3).Select(i => i * 0.5f).ToArray();
        var y = Enumerable.Range(0, 12).Select(i => (long)(i % 2)).ToArray();
        File.WriteAllBytes(dir.File("X.npy"), UserDataFiles.NpyF32(x, 12, 2, 3, 3));
        File.WriteAllBytes(dir.File("y.npy"), UserDataFiles.NpyI64(y));
        UserDataFiles.Npz(dir.File("test.npz"), ("X", UserDataFiles.NpyF32(x[..(4 * 18)], 4, 2, 3, 3)), ("y", UserDataFiles.NpyI64(y[..4])));
        var split = DataSource.Load($"tensors:{dir.File("X.npy")},{dir.File("y.npy")}", new DataOptions { TestData = dir.File("test.npz") });
        Assert.Equal((2, 3, 3), (split.Train.Channels, split.Train.Height, split.Train.Width));
        Assert.Equal((12, 4), (split.Train.Count, split.Test.Count));
        Assert.Equal(x, ((FloatDataset)split.Train).Values);
        Assert.Contains("?test=", split.Source);
        Assert.Equal(split.Test.Fingerprint(), DataSource.Load(split.Source).Test.Fingerprint());
    }

    [Fact]
    public void TensorsRefuseLengthMismatchTruncationBadLabelsAndMissingNames()
    {
        using var dir = new TempDir();
        var x = new float[10 * 4];
        File.WriteAllBytes(dir.File("X.npy"), UserDataFiles.NpyF32(x, 10, 4));
        File.WriteAllBytes(dir.File("y.npy"), UserDataFiles.NpyI64(new long[9]));
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"tensors:{dir.File("X.npy")},{dir.File("y.npy")}"));
        Assert.Contains(dir.File("X.npy"), e.Message);
        Assert.Contains("10 examples", e.Message);
        Assert.Contains("9 labels", e.Message);

        var npy = UserDataFiles.NpyF32(x, 10, 4);
        File.WriteAllBytes(dir.File("X.npy"), npy[..(npy.Length - 5)]);
        File.WriteAllBytes(dir.File("y.npy"), UserDataFiles.NpyI64(new long[] { 0, 1, 0, 1, 0, 1, 0, 1, 0, 1 }));
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"tensors:{dir.File("X.npy")},{dir.File("y.npy")}"));
        Assert.Contains(dir.File("X.npy"), e.Message);
        Assert.Contains("truncated", e.Message);

        string f = dir.File("d.safetensors");
        SafeTensors.Save(f, new Dictionary<string, Tensor> { ["X"] = torch.zeros(10, 4), ["y"] = torch.tensor(new[] { 0f, 1, 0, 1, 0.5f, 1, 0, 1, 0, 1 }) });
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("tensors:" + f));
        Assert.Contains($"{f}:y", e.Message);
        Assert.Contains("index 4", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"tensors:{f}?x=images"));
        Assert.Contains("'images'", e.Message);
        var bytes = File.ReadAllBytes(f);
        File.WriteAllBytes(f, bytes[..(bytes.Length - 8)]);
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("tensors:" + f));
        Assert.Contains(f, e.Message);

        File.WriteAllText(dir.File("bad.npz"), "not a zip");
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("tensors:" + dir.File("bad.npz")));
        Assert.Contains(dir.File("bad.npz"), e.Message);
    }

    [Fact]
    public void TensorsAreReadWhereTheyLieOrDecodedOnceIntoTheCacheWithTheSameValues()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        const int n = 24;
        var y = Enumerable.Range(0, n).Select(i => (long)(i % 3)).ToArray();
        var yi = y.Select(v => (int)v).ToArray();
        File.WriteAllBytes(dir.File("y.npy"), UserDataFiles.NpyI64(y));
        string cache = Path.Combine(dir.Path, ImageFolderReader.CacheDirName);
        string[] Cached() => Directory.Exists(cache) ? Directory.GetFiles(cache, "tensors-*") : Array.Empty<string>();

        // uint8 images [N, 3, 4, 5] in an .npy file: read where they lie; the split is a view.
        var px = new byte[n * 60];
        rng.NextBytes(px);
        File.WriteAllBytes(dir.File("img.npy"), UserDataFiles.Npy("|u1", new long[] { n, 3, 4, 5 }, px));
        var imgs = DataSource.Load($"tensors:{dir.File("img.npy")},{dir.File("y.npy")}", new DataOptions { TestFraction = 0.25 });
        var it = Assert.IsType<ImageDataset>(imgs.Train);
        Assert.Equal(dir.File("img.npy"), Assert.IsType<FilePixelStore>(it.Store).Path);
        var inMemory = new ImageDataset("tensors-train", px, yi, 3, 4, 5, 3).Subset(it.Rows!.ToArray());
        Assert.Equal(inMemory.Pixels, it.Pixels);
        Assert.Equal(inMemory.Fingerprint(), it.Fingerprint());

        // float32 [N, 7] in an .npy file: read where it lies, the same values and fingerprint as in memory.
        var x = Enumerable.Range(0, n * 7).Select(_ => (float)(rng.NextDouble() * 20 - 10)).ToArray();
        File.WriteAllBytes(dir.File("X.npy"), UserDataFiles.NpyF32(x, n, 7));
        var flat = DataSource.Load($"tensors:{dir.File("X.npy")},{dir.File("y.npy")}", new DataOptions { TestFraction = 0.25 });
        var ft = Assert.IsType<FloatDataset>(flat.Train);
        Assert.Equal(dir.File("X.npy"), Assert.IsType<FilePixelStore>(ft.Store).Path);
        var fm = new FloatDataset("tensors-train", x, new[] { 7 }, yi, 3).Subset(ft.Rows!.ToArray());
        Assert.Equal(fm.Values, ft.Values);
        Assert.Equal(fm.Fingerprint(), ft.Fingerprint());
        using (var a = fm.Inputs(new[] { 2, 0 })) using (var b = ft.Inputs(new[] { 2, 0 })) Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray());
        Assert.Empty(Cached());

        // float64 [N, 2, 3] in a .safetensors file: converted to float32 once into the cache, then read from there.
        var x64 = Enumerable.Range(0, n * 6).Select(_ => rng.NextDouble() * 200 - 100).ToArray();
        string st = dir.File("d.safetensors");
        SafeTensors.Save(st, new Dictionary<string, Tensor> { ["X"] = torch.tensor(x64, new long[] { n, 2, 3 }), ["y"] = torch.tensor(y) });
        var conv = DataSource.Load("tensors:" + st, new DataOptions { TestFraction = 0.25 });
        var ct = Assert.IsType<FloatDataset>(conv.Train);
        string cached = Assert.IsType<FilePixelStore>(ct.Store).Path;
        Assert.Equal(cached, Assert.Single(Cached()));
        var cm = new FloatDataset("tensors-train", x64.Select(v => (float)v).ToArray(), new[] { 2, 3 }, yi, 3).Subset(ct.Rows!.ToArray());
        Assert.Equal(cm.Values, ct.Values);
        Assert.Equal(cm.Fingerprint(), ct.Fingerprint());
        var again = DataSource.Load("tensors:" + st, new DataOptions { TestFraction = 0.25 });
        Assert.Equal(cached, ((FilePixelStore)((FloatDataset)again.Train).Store!).Path);
        Assert.Single(Cached());

        // A deflated .npz: float32 features and uint8 images, each decoded once into the cache.
        UserDataFiles.Npz(dir.File("f.npz"), ("X", UserDataFiles.NpyF32(x, n, 7)), ("y", UserDataFiles.NpyI64(y)));
        var nz = (FloatDataset)DataSource.Load("tensors:" + dir.File("f.npz"), new DataOptions { TestFraction = 0.25 }).Train;
        Assert.True(nz.Store!.IsOnDisk);
        Assert.Equal(new FloatDataset("t", x, new[] { 7 }, yi, 3).Subset(nz.Rows!.ToArray()).Values, nz.Values);
        UserDataFiles.Npz(dir.File("i.npz"), ("X", UserDataFiles.Npy("|u1", new long[] { n, 3, 4, 5 }, px)), ("y", UserDataFiles.NpyI64(y)));
        var ni = (ImageDataset)DataSource.Load("tensors:" + dir.File("i.npz"), new DataOptions { TestFraction = 0.25 }).Train;
        Assert.True(ni.Store.IsOnDisk);
        Assert.Equal(new ImageDataset("t", px, yi, 3, 4, 5, 3).Subset(ni.Rows!.ToArray()).Pixels, ni.Pixels);
        Assert.Equal(3, Cached().Length);

        // A non-finite value is refused naming the example, converted (no cache file left) or read in place.
        x64[5 * 6 + 4] = double.NaN;
        SafeTensors.Save(st, new Dictionary<string, Tensor> { ["X"] = torch.tensor(x64, new long[] { n, 2, 3 }), ["y"] = torch.tensor(y) });
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("tensors:" + st));
        Assert.Contains($"{st}:X: example 5 holds a non-finite value", e.Message);
        Assert.Equal(3, Cached().Length);
        x[3 * 7 + 6] = float.PositiveInfinity;
        File.WriteAllBytes(dir.File("X.npy"), UserDataFiles.NpyF32(x, n, 7));
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load($"tensors:{dir.File("X.npy")},{dir.File("y.npy")}"));
        Assert.Contains("example 3 holds a non-finite value", e.Message);
        Assert.Contains("position 6", e.Message);
    }

    // ---- csv ----

    [Fact]
    public void CsvStandardisesWithTrainingStatisticsAndNamesClassesByLabelText()
    {
        using var dir = new TempDir();
        UserDataFiles.Csv(dir.File("train.csv"), 50, TestSeed.Random());
        UserDataFiles.Csv(dir.File("test.csv"), 10, new Random(TestSeed.For() + 1));
        var split = DataSource.Load("csv:" + dir.File("train.csv"), new DataOptions { TestData = "csv:" + dir.File("test.csv") });
        var train = (FloatDataset)split.Train;
        Assert.Equal(new[] { "no", "yes" }, train.ClassNames);
        Assert.Equal(1, train.Channels * train.Height);
        Assert.Equal(2, train.Width);
        var (mean, std) = CsvDataReader.Statistics(train.Values, 2);
        Assert.All(mean, m => Assert.True(Math.Abs(m) < 1e-5, $"mean {m}"));
        Assert.All(std, s => Assert.True(Math.Abs(s - 1) < 1e-4, $"std {s}"));
        // The test rows use the training statistics: the first test row, by hand.
        var rows = File.ReadAllLines(dir.File("train.csv")).Skip(1).Select(l => double.Parse(l.Split(',')[0], System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        double m0 = rows.Average(), s0 = Math.Sqrt(rows.Select(v => (v - m0) * (v - m0)).Average());
        double t0 = double.Parse(File.ReadAllLines(dir.File("test.csv"))[1].Split(',')[0], System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal((t0 - m0) / s0, ((FloatDataset)split.Test).Values[0], 4);
        Assert.Equal(split.Train.Fingerprint(), DataSource.Load(split.Source).Train.Fingerprint());
        Assert.Contains("?label=label&test=", split.Source);

        // Another label column by name; a seeded split when no test file is given.
        UserDataFiles.Csv(dir.File("t2.csv"), 40, TestSeed.Random(), labelName: "target");
        var s2 = DataSource.Load("csv:" + dir.File("t2.csv"), new DataOptions { LabelColumn = "target" });
        Assert.Equal(40, s2.Train.Count + s2.Test.Count);
        Assert.Contains("test-fraction=0.2", s2.Source);
    }

    /// <summary>The rows are streamed into a float32 file that is already unlinked (no table held
    /// in memory), and give exactly the values of the table read whole and standardised by hand: a
    /// byte-order mark, CRLF, quoted fields with commas, quotes and a line break, blank lines, text
    /// labels and a seeded split; a test file with its columns in another order.</summary>
    [Fact]
    public void CsvRowsAreStreamedToAnUnlinkedFileWithTheValuesOfTheWholeTable()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        var ci = System.Globalization.CultureInfo.InvariantCulture;
        string Row(int i) => $"{rng.NextDouble() * 10 - 3:R},\"{(i % 3 == 0 ? "cat, big" : i % 3 == 1 ? "dog \"\"x\"\"" : "eel\nlong")}\",{rng.Next(-50, 50)},{rng.NextDouble():R}";
        var lines = Enumerable.Range(0, 60).Select(Row).Prepend("a,kind,b,c").ToList();
        lines.Insert(10, "");
        File.WriteAllText(dir.File("t.csv"), "\uFEFF" + string.Join("\r\n", lines) + "\r\n\r\n", new System.Text.UTF8Encoding(false));
        var split = DataSource.Load("csv:" + dir.File("t.csv") + "?label=kind&test-fraction=0.25&split-seed=7");
        var train = (FloatDataset)split.Train;
        var test = (FloatDataset)split.Test;
        Assert.True(train.Store!.IsOnDisk);
        Assert.False(File.Exists(((FilePixelStore)train.Store).Path));

        // The oracle: every record in memory, the split, the training statistics, by hand.
        var records = CsvDataReader.ReadRecords(dir.File("t.csv")).Skip(1).ToList();
        Assert.Equal(60, records.Count);
        var names = new[] { "cat, big", "dog \"x\"", "eel\nlong" };
        var y = records.Select(r => Array.IndexOf(names, r.Fields[1])).ToArray();
        var x = records.SelectMany(r => new[] { r.Fields[0], r.Fields[2], r.Fields[3] }.Select(v => (float)double.Parse(v, ci))).ToArray();
        var (tr, te) = DataSource.StratifiedSplit(y, 3, 0.25, 7);
        float[] Pick(int[] rows) => rows.SelectMany(i => x.Skip(3 * i).Take(3)).ToArray();
        var (mean, std) = CsvDataReader.Statistics(Pick(tr), 3);
        float[] Scaled(int[] rows) => Pick(rows).Select((v, k) => (float)((v - mean[k % 3]) / std[k % 3])).ToArray();
        Assert.Equal(names, train.ClassNames);
        Assert.Equal(tr.Select(i => y[i]), train.Labels);
        Assert.Equal(Scaled(tr), train.Values);
        Assert.Equal(Scaled(te), test.Values);
        Assert.Equal(te.Select(i => records[i].Line), test.Sources!.Select(s => s.Line));
        Assert.Equal(split.Train.Fingerprint(), DataSource.Load(split.Source).Train.Fingerprint());

        // A test file whose columns come in another order, read with the training statistics.
        File.WriteAllText(dir.File("u.csv"), "c,b,kind,a\n0.5,3,\"eel\nlong\",1.25\n1,-2,\"cat, big\",0\n");
        var withTest = DataSource.Load("csv:" + dir.File("t.csv") + "?label=kind", new DataOptions { TestData = "csv:" + dir.File("u.csv") });
        var (m2, s2) = CsvDataReader.Statistics(x, 3);
        float S(double v, int k) => (float)(((float)v - m2[k]) / s2[k]);
        Assert.Equal(new[] { S(1.25, 0), S(3, 1), S(0.5, 2), S(0, 0), S(-2, 1), S(1, 2) }, ((FloatDataset)withTest.Test).Values);
        Assert.Equal(new[] { 2, 0 }, withTest.Test.Labels);
        Assert.Equal(new[] { 2, 4 }, withTest.Test.Sources!.Select(s => s.Line));
    }

    [Fact]
    public void CsvErrorsNameTheFileRowAndColumn()
    {
        using var dir = new TempDir();
        string f = dir.File("data.csv");
        var lines = Enumerable.Range(0, 20).Select(i => $"{20 + i},{i % 2}").Prepend("age,label").ToArray();
        lines[16] = "abc,1";                                    // row 17 of the file
        File.WriteAllLines(f, lines);
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("csv:" + f));
        Assert.StartsWith("data.csv: row 17, column 'age': 'abc' is not a number", e.Message);

        lines[16] = "36";                                       // ragged
        File.WriteAllLines(f, lines);
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("csv:" + f));
        Assert.StartsWith("data.csv: row 17 has 1 field(s) but the header has 2", e.Message);

        lines[16] = "36,1";
        File.WriteAllLines(f, lines);
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("csv:" + f, new DataOptions { LabelColumn = "class" }));
        Assert.Contains("no label column 'class'", e.Message);
        Assert.Contains(f, e.Message);

        File.WriteAllText(f, string.Join("\n", lines) + "\n40,\"1");  // truncated inside a quoted field
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("csv:" + f));
        Assert.Contains("row 22", e.Message);
        Assert.Contains("not closed", e.Message);

        File.WriteAllText(f, "");
        e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("csv:" + f));
        Assert.Contains(f, e.Message);
    }

    [Fact]
    public void SpecOptionsAreCheckedAndFoldedIn()
    {
        var e = Assert.Throws<InfluenceSharpException>(() => DataSource.Load("embedded", new DataOptions { ImageSize = (8, 8) }));
        Assert.Contains("--image-size", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => DataSpec.Parse("csv:/x.csv?size=3"));
        Assert.Contains("unknown option 'size'", e.Message);
        e = Assert.Throws<InfluenceSharpException>(() => DataSpec.Parse("csv:/x.csv?label=a").With(new DataOptions { LabelColumn = "b" }));
        Assert.Contains("label=a", e.Message);
        var s = DataSpec.Parse("tensors:/d/a&b.npz?x=im%26g").With(new DataOptions { TestData = "tensors:/d/t.npz", TestFraction = 0.25 });
        Assert.Equal("tensors:/d/a&b.npz?x=im%26g&test=/d/t.npz&test-fraction=0.25", s.ToString());
        Assert.Equal("im&g", DataSpec.Parse(s.ToString())["x"]);
    }
}
