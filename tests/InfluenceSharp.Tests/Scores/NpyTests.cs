using System.Text;
using InfluenceSharp.Scores;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Scores;

public class NpyTests
{
    [Fact]
    public void HeaderIsNumpyVersion1WithDataAlignedTo64Bytes()
    {
        using var dir = new TempDir();
        string path = dir.File("m.npy");
        Npy.Write(path, new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        var bytes = File.ReadAllBytes(path);
        // The 60-character dict + '\n' after the 10-byte preamble pads to 128 bytes, as np.save does.
        Assert.Equal(128 + 24, bytes.Length);
        Assert.Equal(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, 128 - 10, 0 }, bytes[..10]);
        string dict = Encoding.ASCII.GetString(bytes, 10, 118);
        Assert.Equal("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", dict.TrimEnd());
        Assert.Equal('\n', dict[^1]);
        Assert.Equal(BitConverter.GetBytes(4f), bytes[(128 + 12)..(128 + 16)]);
        var h = Npy.ReadHeader(path);
        Assert.Equal(new long[] { 2, 3 }, h.Shape);
        Assert.Equal(128, h.DataOffset);
    }

    [Fact]
    public void RoundTripsRandomFloatAndDoubleMatrices()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        for (int trial = 0; trial < 6; trial++)
        {
            int rows = rng.Next(1, 40), cols = rng.Next(1, 300);
            var f = Enumerable.Range(0, rows * cols).Select(_ => (float)(rng.NextDouble() * 2e3 - 1e3)).ToArray();
            var d = Enumerable.Range(0, rows * cols).Select(_ => rng.NextDouble() * 2 - 1).ToArray();
            Npy.Write(dir.File("f.npy"), f, rows, cols);
            Npy.Write(dir.File("d.npy"), d, rows, cols);
            using var tf = Npy.Read(dir.File("f.npy"));
            using var td = Npy.Read(dir.File("d.npy"));
            Assert.Equal(ScalarType.Float32, tf.dtype);
            Assert.Equal(ScalarType.Float64, td.dtype);
            Assert.Equal(new long[] { rows, cols }, tf.shape);
            Assert.Equal(f, tf.data<float>().ToArray());
            Assert.Equal(d, td.data<double>().ToArray());
            // The tensor overload writes the same bytes.
            Npy.Write(dir.File("t.npy"), tf);
            Assert.Equal(File.ReadAllBytes(dir.File("f.npy")), File.ReadAllBytes(dir.File("t.npy")));
        }
        Assert.Equal(new[] { "d.npy", "f.npy", "t.npy" }, Directory.GetFiles(dir.Path).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void TruncatedOrForeignFilesFailNamingThePath()
    {
        using var dir = new TempDir();
        string path = dir.File("scores.npy");
        using (var t = torch.randn(5, 7)) Npy.Write(path, t);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^3]);
        var e = Assert.Throws<InfluenceSharpException>(() => Npy.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
        File.WriteAllBytes(path, bytes[..30]);
        e = Assert.Throws<InfluenceSharpException>(() => Npy.ReadHeader(path));
        Assert.Contains(path, e.Message);
        File.WriteAllText(path, "not numpy at all");
        e = Assert.Throws<InfluenceSharpException>(() => Npy.Read(path));
        Assert.Contains("magic", e.Message);
        var other = (byte[])bytes.Clone();
        Encoding.ASCII.GetBytes("<i4").CopyTo(other, 21); // 'descr': '<f4' -> '<i4'
        File.WriteAllBytes(path, other);
        e = Assert.Throws<InfluenceSharpException>(() => Npy.Read(path));
        Assert.Contains("'<i4'", e.Message);
    }

    [Fact]
    public void BlockWriterFillsColumnBlocksInAnyOrderAndAppearsOnlyOnComplete()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        int rows = rng.Next(2, 20), cols = rng.Next(30, 200);
        using var full = torch.randn(rows, cols, dtype: ScalarType.Float64);
        string path = dir.File("scores.npy");
        var starts = new List<int> { 0 };
        while (starts[^1] < cols) starts.Add(Math.Min(cols, starts[^1] + rng.Next(1, 40)));
        var order = Enumerable.Range(0, starts.Count - 1).OrderBy(_ => rng.Next()).ToArray();
        using (var w = new NpyBlockWriter(path, rows, cols, NpyDtype.Float64))
        {
            foreach (var (b, i) in order.Select((b, i) => (b, i)))
            {
                using var block = full.narrow(1, starts[b], starts[b + 1] - starts[b]);
                if (i % 2 == 0) w.WriteColumns(starts[b], block);
                else w.WriteColumns(starts[b], block.contiguous().data<double>().ToArray());
                Assert.False(File.Exists(path), "final file appeared before Complete()");
            }
            Assert.True(w.IsComplete);
            w.Complete();
        }
        using var back = Npy.Read(path);
        Assert.True(TensorAssert.BitEqual(full, back));
        Assert.Single(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void BlockWriterRefusesToCompleteWithGapsAndLeavesNothingWhenAbandoned()
    {
        using var dir = new TempDir();
        string path = dir.File("scores.npy");
        using (var w = new NpyBlockWriter(path, 3, 10))
        {
            w.WriteColumns(0, new float[] { 1, 2, 3, 4, 5, 6 });     // columns 0-1
            w.WriteColumns(6, Enumerable.Range(1, 12).Select(v => (float)v).ToArray()); // columns 6-9
            var e = Assert.Throws<InfluenceSharpException>(() => w.Complete());
            Assert.Contains("[2, 6)", e.Message);
            Assert.Throws<InfluenceSharpException>(() => w.WriteColumns(9, new float[] { 1, 2, 3, 4, 5, 6 })); // columns 9-10 of 10
            Assert.Throws<InfluenceSharpException>(() => w.WriteColumns(0, new double[] { 1, 2, 3 }));
            Assert.Single(Directory.GetFiles(dir.Path)); // only the hidden temp file
        }
        Assert.Empty(Directory.GetFiles(dir.Path));
    }

    [Fact]
    public void BlockWriterFillsRowBlocksByColumnsAndCompletesOnlyWhenEveryRowBlockIsWritten()
    {
        using var dir = new TempDir();
        var rng = TestSeed.Random();
        int rowBlock = rng.Next(2, 5), rows = rowBlock * rng.Next(2, 4) + rng.Next(1, rowBlock), cols = rng.Next(20, 60);
        using var full = torch.randn(rows, cols, dtype: ScalarType.Float64);
        string path = dir.File("scores.npy");
        int split = rng.Next(1, cols);
        var cells = new List<(int Row, int Col, int Width)>();
        for (int r = 0; r < rows; r += rowBlock) { cells.Add((r, 0, split)); cells.Add((r, split, cols - split)); }
        using (var w = new NpyBlockWriter(path, rows, cols, NpyDtype.Float64, rowBlock))
        {
            foreach (var (r, c, width) in cells.OrderBy(_ => rng.Next()))
            {
                Assert.False(w.IsComplete);
                using var block = full.narrow(0, r, Math.Min(rowBlock, rows - r)).narrow(1, c, width);
                w.WriteBlock(r, c, block);
            }
            Assert.True(w.IsComplete);
            // A row range that is not whole row blocks is refused.
            using var odd = full.narrow(0, 1, rowBlock).narrow(1, 0, 1);
            Assert.Contains("whole blocks", Assert.Throws<InfluenceSharpException>(() => w.WriteBlock(1, 0, odd)).Message);
            w.Complete();
        }
        using var back = Npy.Read(path);
        Assert.True(TensorAssert.BitEqual(full, back));

        // One row block left out: Complete names its rows and columns.
        string gap = dir.File("gap.npy");
        using var w2 = new NpyBlockWriter(gap, rows, cols, NpyDtype.Float64, rowBlock);
        foreach (var (r, c, width) in cells.Skip(1))
        {
            using var block = full.narrow(0, r, Math.Min(rowBlock, rows - r)).narrow(1, c, width);
            w2.WriteBlock(r, c, block);
        }
        var e = Assert.Throws<InfluenceSharpException>(() => w2.Complete());
        Assert.Contains($"rows [0, {rowBlock}), columns [0, {split})", e.Message);
    }
}
