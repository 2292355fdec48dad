using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace InfluenceSharp.Formats;

/// <summary>
/// Writes a [rows, cols] .npy matrix one block at a time, in any order, into a preallocated temp
/// file beside the target: a column block (all rows, a range of train examples), or, when the rows
/// come in blocks of <c>rowBlock</c> (queries scored a block at a time), one row block's columns. Only <see cref="Complete"/>
/// renames it to the final name, after checking every column was written, so a crash or an early
/// Dispose never leaves a file under the final name that looks complete.
/// </summary>
public sealed class NpyBlockWriter : IDisposable
{
    private readonly FileStream stream;
    private readonly string tempPath;
    // written[b][c]: row block b of column c has been written (one row block unless rowBlock < rows).
    private readonly bool[][] written;
    private readonly long rowBlock;
    private readonly long dataOffset;
    private readonly int elementSize;
    private long cellsLeft;
    private bool done;

    public NpyBlockWriter(string path, long rows, long cols, NpyDtype dtype = NpyDtype.Float32, long rowBlock = 0)
    {
        if (rows < 1 || cols < 1) throw new InfluenceSharpException($"{path}: matrix shape [{rows}, {cols}] must be positive");
        if (rowBlock < 0) throw new InfluenceSharpException($"{path}: row block {rowBlock} must be positive");
        if (cols > Array.MaxLength) throw new InfluenceSharpException($"{path}: {cols} columns is too many");
        Path = System.IO.Path.GetFullPath(path);
        Rows = rows; Cols = cols; Dtype = dtype;
        elementSize = dtype == NpyDtype.Float64 ? 8 : 4;
        string dir = System.IO.Path.GetDirectoryName(Path)!;
        Directory.CreateDirectory(dir);
        tempPath = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(Path)}.partial-{Environment.ProcessId}-{Guid.NewGuid():N}");
        byte[] header = Npy.Header(dtype, new[] { rows, cols });
        dataOffset = header.Length;
        stream = new FileStream(tempPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16);
        stream.Write(header);
        stream.SetLength(dataOffset + rows * cols * elementSize);
        this.rowBlock = rowBlock == 0 || rowBlock > rows ? rows : rowBlock;
        written = new bool[(rows + this.rowBlock - 1) / this.rowBlock][];
        for (int b = 0; b < written.Length; b++) written[b] = new bool[cols];
        cellsLeft = written.Length * cols;
    }

    public string Path { get; }
    public long Rows { get; }
    public long Cols { get; }
    public NpyDtype Dtype { get; }
    public bool IsComplete => cellsLeft == 0;

    /// <summary>Writes a row-major block [Rows, block.Length / Rows] at columns [colStart, colStart + width).</summary>
    public void WriteColumns(long colStart, ReadOnlySpan<float> block) => WriteCore(colStart, MemoryMarshal.AsBytes(block), block.Length, NpyDtype.Float32);

    /// <inheritdoc cref="WriteColumns(long, ReadOnlySpan{float})"/>
    public void WriteColumns(long colStart, ReadOnlySpan<double> block) => WriteCore(colStart, MemoryMarshal.AsBytes(block), block.Length, NpyDtype.Float64);

    /// <summary>Writes a block tensor [Rows, width] (any device; converted to the file's dtype).</summary>
    public void WriteColumns(long colStart, Tensor block)
    {
        if (block.dim() != 2 || block.shape[0] != Rows)
            throw new InfluenceSharpException($"{Path}: block of shape [{string.Join(", ", block.shape)}] is not [{Rows}, cols]");
        WriteBlock(0, colStart, block);
    }

    /// <summary>Writes a block tensor [rows, width] at rows [rowStart, rowStart + rows) and columns
    /// [colStart, colStart + width). Its rows must be whole row blocks: start at a multiple of the
    /// row block and end at one (or at the last row).</summary>
    public void WriteBlock(long rowStart, long colStart, Tensor block)
    {
        if (block.dim() != 2)
            throw new InfluenceSharpException($"{Path}: block of shape [{string.Join(", ", block.shape)}] is not a matrix");
        using var c = block.detach().cpu().to_type(Dtype == NpyDtype.Float64 ? ScalarType.Float64 : ScalarType.Float32).contiguous();
        WriteCore(rowStart, block.shape[0], colStart, c.bytes, c.numel(), Dtype);
    }

    private void WriteCore(long colStart, ReadOnlySpan<byte> bytes, long count, NpyDtype dtype)
    {
        if (count % Rows != 0) throw new InfluenceSharpException($"{Path}: block of {count} values is not a whole number of rows of {Rows}");
        WriteCore(0, Rows, colStart, bytes, count, dtype);
    }

    private void WriteCore(long rowStart, long rows, long colStart, ReadOnlySpan<byte> bytes, long count, NpyDtype dtype)
    {
        ObjectDisposedException.ThrowIf(done, this);
        if (dtype != Dtype) throw new InfluenceSharpException($"{Path}: block is {dtype} but the file is {Dtype}");
        long rowEnd = rowStart + rows;
        if (rows < 1 || rowStart < 0 || rowEnd > Rows || rowStart % rowBlock != 0 || (rowEnd % rowBlock != 0 && rowEnd != Rows))
            throw new InfluenceSharpException($"{Path}: rows [{rowStart}, {rowEnd}) are not whole blocks of {rowBlock} rows within [0, {Rows})");
        long width = count / rows;
        if (colStart < 0 || colStart + width > Cols)
            throw new InfluenceSharpException($"{Path}: columns [{colStart}, {colStart + width}) are outside [0, {Cols})");
        int rowBytes = checked((int)(width * elementSize));
        for (long r = 0; r < rows; r++)
        {
            stream.Position = dataOffset + ((rowStart + r) * Cols + colStart) * elementSize;
            stream.Write(bytes.Slice(checked((int)(r * rowBytes)), rowBytes));
        }
        for (long b = rowStart / rowBlock; b * rowBlock < rowEnd; b++)
            for (long c = colStart; c < colStart + width; c++)
                if (!written[b][c]) { written[b][c] = true; cellsLeft--; }
    }

    /// <summary>Flushes to disk and renames the file to its final name. Fails, naming the first
    /// missing column range, if some columns were never written.</summary>
    /// <param name="onChecksum">Receives the complete file's checksum before it is renamed into
    /// place (to be recorded in the manifest).</param>
    public void Complete(Action<string>? onChecksum = null)
    {
        ObjectDisposedException.ThrowIf(done, this);
        if (cellsLeft > 0)
        {
            int b = Array.FindIndex(written, w => Array.IndexOf(w, false) >= 0);
            long first = Array.IndexOf(written[b], false), end = first;
            while (end < Cols && !written[b][end]) end++;
            if (written.Length == 1)
                throw new InfluenceSharpException($"{Path}: cannot complete: {cellsLeft} of {Cols} columns were never written (first gap [{first}, {end}))");
            throw new InfluenceSharpException($"{Path}: cannot complete: {cellsLeft} of {written.Length * Cols} (row block, column) pairs were never written (first gap: rows [{b * rowBlock}, {Math.Min(Rows, (b + 1) * rowBlock)}), columns [{first}, {end}))");
        }
        try
        {
            stream.Flush(flushToDisk: true);
            stream.Dispose();
            if (onChecksum is not null) onChecksum(Checksum.OfFile(tempPath));
            File.Move(tempPath, Path, overwrite: true);
            done = true;
        }
        catch
        {
            Dispose();   // e.g. a full disk: delete the temp file rather than leave it
            throw;
        }
    }

    /// <summary>Without <see cref="Complete"/>, deletes the temp file: nothing appears under the final name.</summary>
    public void Dispose()
    {
        if (done) return;
        done = true;
        // Disposing flushes buffered data and can throw (a full disk); the temp file goes regardless.
        try { stream.Dispose(); }
        catch (IOException) { }
        finally { try { File.Delete(tempPath); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
    }
}
