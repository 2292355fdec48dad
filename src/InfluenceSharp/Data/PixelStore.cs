using Microsoft.Win32.SafeHandles;

namespace InfluenceSharp.Data;

/// <summary>Where an image data set's uint8 pixels live: a managed array (small data, tests) or a
/// file read image by image (the image folder's decode cache, IDX and CIFAR-10 files, tensors:
/// inputs), so that no single managed array has to hold every image. Images are fixed-size records
/// (<see cref="ImageSize"/> bytes each). Reads are thread-safe.</summary>
public abstract class PixelStore
{
    public abstract long Count { get; }
    public abstract int ImageSize { get; }

    /// <summary>Copies image <paramref name="index"/> (<see cref="ImageSize"/> bytes) into <paramref name="destination"/>.</summary>
    public abstract void Read(long index, Span<byte> destination);

    /// <summary>True when the pixels are read from a file rather than held in memory.</summary>
    public virtual bool IsOnDisk => false;

    /// <summary>Reads images [start, start + count) into one buffer (consecutive records).</summary>
    public virtual void ReadRange(long start, int count, Span<byte> destination)
    {
        for (int i = 0; i < count; i++) Read(start + i, destination.Slice(i * ImageSize, ImageSize));
    }

    protected void Check(long index, int length)
    {
        if ((ulong)index >= (ulong)Count) throw new ArgumentOutOfRangeException(nameof(index), $"image {index} of {Count}");
        if (length < ImageSize) throw new ArgumentException($"destination holds {length} bytes, an image {ImageSize}");
    }
}

/// <summary>Pixels held in one managed array, image after image.</summary>
public sealed class ArrayPixelStore : PixelStore
{
    public ArrayPixelStore(byte[] pixels, int imageSize)
    {
        if (imageSize <= 0 || pixels.LongLength % imageSize != 0)
            throw new ArgumentException($"{pixels.LongLength} bytes are not a whole number of {imageSize}-byte images");
        Pixels = pixels; ImageSize = imageSize;
    }

    public byte[] Pixels { get; }
    public override long Count => Pixels.LongLength / ImageSize;
    public override int ImageSize { get; }

    public override void Read(long index, Span<byte> destination)
    {
        Check(index, destination.Length);
        Pixels.AsSpan().Slice(checked((int)(index * ImageSize)), ImageSize).CopyTo(destination);
    }
}

/// <summary>
/// Pixels read from a file: image i is the <see cref="ImageSize"/> bytes at <c>offset + i · stride</c>
/// (stride = the image size for a plain array; larger for files that interleave labels, as CIFAR-10's
/// records do), read with positional reads (pread) into the caller's buffer. The file's pages live in
/// the kernel's page cache, shared and reclaimable, and never count in the process's resident set, so
/// the process's peak RSS does not grow with the number of images read. (A read-only memory mapping
/// did: a touched page counts in RSS until released, and on kernels that cache files in large folios
/// one read of a 3 KB image maps up to 2 MiB, so reading images in a shuffled order made the whole
/// file resident between two releases.)
/// </summary>
public sealed class FilePixelStore : PixelStore
{
    readonly SafeFileHandle handle;
    readonly long offset, stride;

    /// <summary>Opens <paramref name="path"/> for reading.</summary>
    /// <param name="path">The file.</param>
    /// <param name="offset">Byte offset of image 0.</param>
    /// <param name="stride">Bytes from one image to the next (at least <paramref name="imageSize"/>).</param>
    /// <param name="imageSize">Bytes per image.</param>
    /// <param name="count">Number of images; the file must hold them all.</param>
    public FilePixelStore(string path, long offset, long stride, int imageSize, long count)
    {
        if (imageSize <= 0 || stride < imageSize || offset < 0 || count <= 0)
            throw new ArgumentException($"{path}: bad layout (offset {offset}, stride {stride}, image size {imageSize}, count {count})");
        long length = new FileInfo(path).Length;
        if (offset + (count - 1) * stride + imageSize > length)
            throw new InfluenceSharpException($"{path}: {length} bytes do not hold {count} images of {imageSize} bytes from offset {offset} (truncated?)");
        Path = path; this.offset = offset; this.stride = stride; ImageSize = imageSize; Count = count;
        handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
    }

    public string Path { get; }
    public override long Count { get; }
    public override int ImageSize { get; }
    public override bool IsOnDisk => true;

    public override void Read(long index, Span<byte> destination)
    {
        Check(index, destination.Length);
        ReadAt(offset + index * stride, destination[..ImageSize]);
    }

    public override void ReadRange(long start, int count, Span<byte> destination)
    {
        if (count == 0) return;
        Check(start, ImageSize);
        Check(start + count - 1, ImageSize);
        if (stride != ImageSize || destination.Length < (long)count * ImageSize) { base.ReadRange(start, count, destination); return; }
        ReadAt(offset + start * stride, destination[..(count * ImageSize)]);
    }

    void ReadAt(long position, Span<byte> destination)
    {
        while (destination.Length > 0)
        {
            int n = RandomAccess.Read(handle, destination, position);
            if (n <= 0) throw new InfluenceSharpException($"{Path}: the file ended at byte {position} while images were read from it (truncated after it was opened?)");
            destination = destination[n..];
            position += n;
        }
    }
}

/// <summary>Several stores read as one, image after image (CIFAR-10's five training batches).</summary>
public sealed class ConcatPixelStore : PixelStore
{
    readonly PixelStore[] parts;
    readonly long[] starts;

    public ConcatPixelStore(IReadOnlyList<PixelStore> parts)
    {
        if (parts.Count == 0) throw new ArgumentException("no stores to concatenate");
        if (parts.Any(p => p.ImageSize != parts[0].ImageSize)) throw new ArgumentException("stores of different image sizes");
        this.parts = parts.ToArray();
        starts = new long[parts.Count + 1];
        for (int i = 0; i < parts.Count; i++) starts[i + 1] = starts[i] + parts[i].Count;
        ImageSize = parts[0].ImageSize;
    }

    public override long Count => starts[^1];
    public override int ImageSize { get; }
    public override bool IsOnDisk => parts.All(p => p.IsOnDisk);

    public override void Read(long index, Span<byte> destination)
    {
        Check(index, destination.Length);
        int k = Array.BinarySearch(starts, index);
        if (k < 0) k = ~k - 1;
        while (starts[k + 1] <= index) k++;      // skip empty parts
        parts[k].Read(index - starts[k], destination);
    }
}
