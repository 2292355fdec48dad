using InfluenceSharp.Data;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Data;

/// <summary>Per-example sources: set by every reader, kept by Subset and WithLabels, outside the fingerprint.</summary>
public class ExampleSourceTests
{
    [Fact]
    public void SubsetAndWithLabelsKeepSources()
    {
        var rng = TestSeed.Random();
        var px = new byte[5 * 4];
        rng.NextBytes(px);
        var img = new ImageDataset("d", px, new[] { 0, 1, 0, 1, 1 }, 1, 2, 2, 2);
        var sources = Enumerable.Range(0, 5).Select(i => ExampleSource.OfFile("/data", $"c/{i}.png")).ToArray();
        var withSrc = (ImageDataset)img.WithSources(sources);
        Assert.Null(img.Sources);
        Assert.Equal(img.Fingerprint(), withSrc.Fingerprint());
        var sub = withSrc.Subset(new[] { 4, 1 });
        Assert.Equal(new[] { "c/4.png", "c/1.png" }, sub.Sources!.Select(s => s.Text));
        var relabelled = sub.WithLabels(new[] { 0, 0 });
        Assert.Equal(sub.Sources, relabelled.Sources);
        Assert.Equal(sub.Sources, ((ImageDataset)relabelled).WithClassNames(new[] { "a", "b" }).Sources);

        var f = new FloatDataset("f", new float[] { 1, 2, 3, 4, 5, 6 }, new[] { 2 }, new[] { 0, 1, 1 }, 2)
            .WithSources(new[] { ExampleSource.OfCsvRow("/t.csv", 1, 2), ExampleSource.OfCsvRow("/t.csv", 2, 3), ExampleSource.OfCsvRow("/t.csv", 3, 5) });
        Assert.Equal(new[] { "t.csv row 3 (line 5)", "t.csv row 1 (line 2)" }, f.Subset(new[] { 2, 0 }).WithLabels(new[] { 1, 1 }).Sources!.Select(s => s.Text));
        Assert.Throws<ArgumentException>(() => f.WithSources(new[] { ExampleSource.OfArray("x", 0) }));
    }

    [Fact]
    public void ReadersNameFilesRowsAndIndices()
    {
        using var dir = new TempDir();
        // Image folder with a seeded split: every example names its file, train and test disjoint.
        string root = dir.File("pets");
        UserDataFiles.ImageFolder(root, new[] { "cat", "dog" }, 6, TestSeed.Random());
        var split = DataSource.Load("imagefolder:" + root);
        var all = split.Train.Sources!.Concat(split.Test.Sources!).Select(s => s.Text).OrderBy(s => s, StringComparer.Ordinal).ToArray();
        Assert.Equal(Directory.GetFiles(root, "*.png", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(root, p).Replace('\\', '/')).OrderBy(s => s, StringComparer.Ordinal), all);
        for (int i = 0; i < split.Train.Count; i++)
            Assert.Equal(split.Train.DisplayPixels(i), ImageFile.Load(split.Train.Sources![i].FullPath!, 1).Pixels);

        // CSV with a blank line and a quoted field: rows count data rows, lines count the file's lines.
        File.WriteAllText(dir.File("t.csv"), "a,b,label\n1,2,x\n\n3,\"4\",y\n5,6,x\n7,8,y\n9,10,x\n11,12,y\n");
        var csv = DataSource.Load($"csv:{dir.File("t.csv")}?test-fraction=0.3");
        var texts = csv.Train.Sources!.Concat(csv.Test.Sources!).Select(s => (s.Number, s.Line)).OrderBy(s => s.Number).ToArray();
        Assert.Equal(new[] { (1, 2), (2, 4), (3, 5), (4, 6), (5, 7), (6, 8) }, texts);

        // Tensors: the index into X (and into X_test when the file holds a test part).
        string st = dir.File("d.safetensors");
        var rng = TestSeed.Random();
        SafeTensors.Save(st, new Dictionary<string, Tensor>
        {
            ["X"] = torch.tensor(Enumerable.Range(0, 30).Select(_ => (float)rng.NextDouble()).ToArray(), new long[] { 10, 3 }),
            ["y"] = torch.tensor(Enumerable.Range(0, 10).Select(i => (long)(i % 2)).ToArray()),
        });
        var t = DataSource.Load("tensors:" + st);
        Assert.All(t.Train.Sources!.Concat(t.Test.Sources!), s => Assert.Equal($"d.safetensors X[{s.Number}]", s.Text));
        Assert.Equal(Enumerable.Range(0, 10), t.Train.Sources!.Concat(t.Test.Sources!).Select(s => s.Number).Order());
        // Tensor files are not cleaned: the message says what to do instead, and nothing is written.
        var e = Assert.Throws<InfluenceSharpException>(() => DataCleaner.Clean(t.Source, t.Train, new[] { new CleanItem(0, CleanDecision.Remove) }, new CleanOptions(dir.File("clean"))));
        Assert.Contains("np.delete", e.Message);
        Assert.False(Directory.Exists(dir.File("clean")));

        // Embedded: the index in the IDX file.
        Assert.Equal("embedded:train-images-idx3-ubyte.gz #7", Embedded.Split.Train.SourceOf(7)!.Text);
        Assert.Equal("embedded:t10k-images-idx3-ubyte.gz #0", Embedded.Split.Test.SourceOf(0)!.Text);
    }
}
