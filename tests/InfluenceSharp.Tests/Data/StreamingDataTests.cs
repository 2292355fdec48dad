using InfluenceSharp.Data;
using InfluenceSharp.Reporting;

namespace InfluenceSharp.Tests.Data;

/// <summary>Data that need not fit in memory: the image folder's decode cache is read from disk (no page of it resident in the process),
/// subsets are views of one pixel store, directory-link loops are not followed, and the cache is
/// keyed on file contents.</summary>
public class StreamingDataTests
{
    [Fact]
    public void ImageFolderIsOnDiskAndItsSplitsAndSubsetsAreViews()
    {
        using var dir = new TempDir();
        string root = dir.File("pets");
        UserDataFiles.ImageFolder(root, new[] { "a", "b", "c" }, 8, TestSeed.Random(), rgb: true, (5, 7));
        var split = DataSource.Load("imagefolder:" + root);
        var train = Assert.IsType<ImageDataset>(split.Train);
        var test = Assert.IsType<ImageDataset>(split.Test);
        Assert.True(train.Store.IsOnDisk);
        Assert.Same(train.Store, test.Store);                 // both splits read the one cache file
        Assert.Equal(24, train.Store.Count);

        var sub = train.Subset(new[] { 5, 0, 3 });
        var relabelled = sub.WithLabels(new[] { 2, 2, 2 });
        Assert.Same(train.Store, sub.Store);
        Assert.Same(train.Store, relabelled.Store);
        Assert.Equal(new[] { train.Row(5), train.Row(0), train.Row(3) }, sub.Rows);

        // The view reads the same pixels as the data it was taken from, and as the files hold.
        for (int i = 0; i < 3; i++)
            Assert.Equal(train.DisplayPixels(new[] { 5, 0, 3 }[i]), sub.DisplayPixels(i));
        using var a = train.Inputs(new[] { 5, 0, 3 });
        using var b = sub.Inputs(new[] { 0, 1, 2 });
        Assert.True(TensorAssert.BitEqual(a, b));
        Assert.NotEqual(0, a.abs().sum().item<float>());

        // The fingerprint of a view of the file equals that of the same pixels in one array.
        var copy = new ImageDataset("copy", sub.Pixels, sub.Labels, sub.Channels, sub.Height, sub.Width, sub.NumClasses);
        Assert.Equal(copy.Fingerprint(), sub.Fingerprint());
        Assert.Equal(copy.Pixels, sub.Pixels);
    }

    [Fact]
    public void InMemorySubsetIsAViewAndKeepsFingerprintAndPixels()
    {
        var rng = TestSeed.Random();
        var px = new byte[10 * 2 * 3 * 3];
        rng.NextBytes(px);
        var data = new ImageDataset("d", px, Enumerable.Range(0, 10).Select(i => i % 3).ToArray(), 2, 3, 3, 3);
        var idx = new[] { 9, 2, 2, 4 };
        var sub = data.Subset(idx);
        Assert.Same(data.Store, sub.Store);
        var expected = idx.SelectMany(i => px.Skip(i * 18).Take(18)).ToArray();
        Assert.Equal(expected, sub.Pixels);
        var flat = new ImageDataset("d", expected, idx.Select(i => i % 3).ToArray(), 2, 3, 3, 3);
        Assert.Equal(flat.Fingerprint(), sub.Fingerprint());
        // A subset of a subset composes the rows.
        var sub2 = sub.Subset(new[] { 3, 0 });
        Assert.Equal(new[] { 4, 9 }, sub2.Rows);
        Assert.Equal(px.Skip(4 * 18).Take(18).ToArray(), sub2.DisplayPixels(0));
    }

    [Fact]
    public void FileStoreReadsStridedRecords()
    {
        using var dir = new TempDir();
        // Records of a 3-byte header and 5 pixel bytes after an 11-byte file header.
        var rng = TestSeed.Random();
        var file = new byte[11 + 7 * 8];
        rng.NextBytes(file);
        string path = dir.File("records.bin");
        File.WriteAllBytes(path, file);
        var store = new FilePixelStore(path, 11 + 3, 8, 5, 7);
        var got = new byte[5];
        for (int i = 0; i < 7; i++)
        {
            store.Read(i, got);
            Assert.Equal(file.Skip(14 + 8 * i).Take(5).ToArray(), got);
        }
        var range = new byte[15];
        store.ReadRange(2, 3, range);
        Assert.Equal(Enumerable.Range(2, 3).SelectMany(i => file.Skip(14 + 8 * i).Take(5)).ToArray(), range);
        Assert.Throws<InfluenceSharpException>(() => new FilePixelStore(path, 11 + 3, 8, 5, 8));  // past the end
    }

    [Fact]
    public void FileStoreReadInShuffledOrderKeepsNoPageOfTheFileResident()
    {
        if (!OperatingSystem.IsLinux()) return;   // residency read from /proc/self/smaps
        using var dir = new TempDir();
        // 8 MiB of 3,000-byte records (not page-aligned), read one at a time in a shuffled order, as
        // training epochs read.
        var rng = TestSeed.Random();
        const int record = 3000, count = (8 << 20) / record;
        var file = new byte[record * count];
        rng.NextBytes(file);
        string path = dir.File("records.bin");
        File.WriteAllBytes(path, file);
        var store = new FilePixelStore(path, 0, record, record, count);
        var order = Enumerable.Range(0, count).OrderBy(_ => rng.Next()).ToArray();
        var got = new byte[record];
        long most = 0;
        for (int i = 0; i < count; i++)
        {
            store.Read(order[i], got);
            if (i % 50 == 0) Assert.Equal(file.AsSpan(order[i] * record, record).ToArray(), got);
            if (i % 20 == 0) most = Math.Max(most, MappedRss(path));
        }
        // A read-only mapping released after every 1 MiB of pages touched still had the whole file
        // (8 MiB) resident after 40 reads here: the kernel mapped a large folio (~2 MiB) per read.
        Assert.True(most == 0, $"{most >> 10} KiB of the file resident in this process");
        GC.KeepAlive(store);
    }

    /// <summary>Resident bytes of this process's mappings of <paramref name="path"/> (/proc/self/smaps).</summary>
    static long MappedRss(string path)
    {
        long total = 0;
        bool inside = false;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            string first = line.Split(' ', 2)[0];
            if (first.Contains('-') && first.All(c => c == '-' || char.IsAsciiHexDigit(c)))   // a mapping's header line
                inside = line.EndsWith(path, StringComparison.Ordinal);
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
                total += long.Parse(line[4..^2].Trim(), System.Globalization.CultureInfo.InvariantCulture) * 1024;
        }
        return total;
    }

    [Fact]
    public void ImageFolderDoesNotFollowDirectoryLinkLoops()
    {
        using var dir = new TempDir();
        string root = dir.File("photos");
        UserDataFiles.ImageFolder(root, new[] { "x", "y" }, 10, TestSeed.Random(), rgb: false, (4, 4));
        // x/sub holds two more images and a link back to x; y/loop points at the whole folder.
        string sub = Path.Combine(root, "x", "sub");
        Directory.CreateDirectory(sub);
        File.WriteAllBytes(Path.Combine(sub, "s0.png"), PngWriter.Encode(new byte[16].Select((_, i) => (byte)(i * 9 + 3)).ToArray(), 4, 4, 1));
        File.WriteAllBytes(Path.Combine(sub, "s1.png"), PngWriter.Encode(new byte[16].Select((_, i) => (byte)(i * 5 + 7)).ToArray(), 4, 4, 1));
        Directory.CreateSymbolicLink(Path.Combine(sub, "back"), "..");
        Directory.CreateSymbolicLink(Path.Combine(root, "y", "loop"), "../..");
        // A link to a directory outside the folder is followed (read once).
        string outside = dir.File("more");
        UserDataFiles.ImageFolder(outside, new[] { "z" }, 3, TestSeed.Random(), rgb: false, (4, 4));
        Directory.CreateSymbolicLink(Path.Combine(root, "y", "more"), Path.Combine(outside, "z"));

        var split = DataSource.Load("imagefolder:" + root + "?test-fraction=0.25");
        Assert.Equal(12 + 13, split.Train.Count + split.Test.Count);
        Assert.Equal(12, split.Train.Labels.Count(l => l == 0) + split.Test.Labels.Count(l => l == 0));
    }

    [Fact]
    public void CacheIsKeyedOnContentNotSizeAndModificationTime()
    {
        using var dir = new TempDir();
        string root = dir.File("pets");
        UserDataFiles.ImageFolder(root, new[] { "a", "b" }, 5, TestSeed.Random(), rgb: false, (4, 4));
        var first = DataSource.Load("imagefolder:" + root + "?test-fraction=0.2");
        // Replace one image by another of the same size (PNG of the same dimensions, same encoder
        // settings and incompressible content, so the same byte count) and restore its timestamp.
        string f = Path.Combine(root, "a", "000.png");
        var old = File.ReadAllBytes(f);
        var time = File.GetLastWriteTimeUtc(f);
        byte[] replacement;
        var rng = new Random(1234);
        do
        {
            var px = new byte[16];
            rng.NextBytes(px);
            replacement = PngWriter.Encode(px, 4, 4, 1);
        } while (replacement.Length != old.Length || replacement.SequenceEqual(old));
        File.WriteAllBytes(f, replacement);
        File.SetLastWriteTimeUtc(f, time);
        Assert.Equal(old.Length, new FileInfo(f).Length);

        var second = DataSource.Load("imagefolder:" + root + "?test-fraction=0.2");
        var expected = ImageFile.Load(f, 1).Pixels;
        var all = new[] { second.Train, second.Test }.SelectMany(d => Enumerable.Range(0, d.Count).Select(d.DisplayPixels)).ToList();
        Assert.Contains(all, p => p.SequenceEqual(expected));
        Assert.NotEqual(first.Train.Fingerprint() + first.Test.Fingerprint(), second.Train.Fingerprint() + second.Test.Fingerprint());
    }
}
