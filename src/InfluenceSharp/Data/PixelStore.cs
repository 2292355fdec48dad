using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace InfluenceSharp.Data;

/// <summary>Where an image data set's uint8 pixels live: a managed array (small data, tests) or a
/// read-only memory-mapped file (the image folder's decode cache, IDX and CIFAR-10 files), so that
/// no single managed array has to hold every image. Images are fixed-size records
/// (<see cref="ImageSize"/> bytes each). Reads are thread-safe.</summary>
public abstract class PixelStore
{
    public abstract long Count { get; }
    public abstract int ImageSize { get; }

    /// <summary>Copies image <paramref name="index"/> (<see cref="ImageSize"/> bytes) into <paramref name="destination"/>.</summary>
    public abstract void Read(long index, Span<byte> destination);

    /// <summary>True when the pixels are read from a memory-mapped file rather than held in memory.</summary>
    public virtual bool IsMemoryMapped => false;

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
/// Pixels read from a file through a read-only memory mapping: image i is the <see cref="ImageSize"/>
/// bytes at <c>offset + i · stride</c> (stride = the image size for a plain array; larger for files
/// that interleave labels, as CIFAR-10's records do). The mapping is the whole file, but a mapped page
/// counts in the process's resident set once touched, so after every <see cref="ReleaseBytes"/> bytes
/// read the store tells the kernel (Linux: madvise MADV_DONTNEED) that its pages are not needed: they
/// stay in the page cache, and the process's peak RSS does not grow with the number of images read.
/// </summary>
public sealed unsafe class MappedPixelStore : PixelStore
{
    /// <summary>Bytes read between two releases of the mapping's resident pages.</summary>
    public const long ReleaseBytes = 64L << 20;

    readonly MemoryMappedFile file;
    readonly MemoryMappedViewAccessor view;
    readonly byte* mapping;      // start of the mapped region (page-aligned)
    readonly byte* data;         // the file's byte 0
    readonly ulong mappedLength;
    readonly long offset, stride;
    long sinceRelease;

    /// <summary>Maps <paramref name="path"/> read-only.</summary>
    /// <param name="path">The file.</param>
    /// <param name="offset">Byte offset of image 0.</param>
    /// <param name="stride">Bytes from one image to the next (at least <paramref name="imageSize"/>).</param>
    /// <param name="imageSize">Bytes per image.</param>
    /// <param name="count">Number of images; the file must hold them all.</param>
    public MappedPixelStore(string path, long offset, long stride, int imageSize, long count)
    {
        GC.SuppressFinalize(this);   // until the mapping exists
        if (imageSize <= 0 || stride < imageSize || offset < 0 || count <= 0)
            throw new ArgumentException($"{path}: bad layout (offset {offset}, stride {stride}, image size {imageSize}, count {count})");
        long length = new FileInfo(path).Length;
        if (offset + (count - 1) * stride + imageSize > length)
            throw new InfluenceSharpException($"{path}: {length} bytes do not hold {count} images of {imageSize} bytes from offset {offset} (truncated?)");
        Path = path; this.offset = offset; this.stride = stride; ImageSize = imageSize; Count = count;
        file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        mapping = p;
        data = p + view.PointerOffset;
        mappedLength = view.SafeMemoryMappedViewHandle.ByteLength;
        GC.ReRegisterForFinalize(this);
    }

    ~MappedPixelStore()
    {
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        file.Dispose();
    }

    public string Path { get; }
    public override long Count { get; }
    public override int ImageSize { get; }
    public override bool IsMemoryMapped => true;

    public override void Read(long index, Span<byte> destination)
    {
        Check(index, destination.Length);
        new ReadOnlySpan<byte>(data + offset + index * stride, ImageSize).CopyTo(destination);
        Touched(ImageSize);
        GC.KeepAlive(this);
    }

    public override void ReadRange(long start, int count, Span<byte> destination)
    {
        if (count == 0) return;
        Check(start, ImageSize);
        Check(start + count - 1, ImageSize);
        if (stride != ImageSize || destination.Length < (long)count * ImageSize) { base.ReadRange(start, count, destination); return; }
        new ReadOnlySpan<byte>(data + offset + start * stride, count * ImageSize).CopyTo(destination);
        Touched((long)count * ImageSize);
        GC.KeepAlive(this);
    }

    void Touched(long bytes)
    {
        if (Interlocked.Add(ref sinceRelease, bytes) < ReleaseBytes) return;
        Interlocked.Exchange(ref sinceRelease, 0);
        Release();
    }

    /// <summary>Drops the mapping's pages from the process's resident set (they stay in the page
    /// cache; a later read maps them again). A no-op outside Linux, whose kernels trim mapped pages
    /// of an idle working set themselves.</summary>
    public void Release()
    {
        if (OperatingSystem.IsLinux()) _ = madvise((IntPtr)mapping, (UIntPtr)mappedLength, MadvDontNeed);
        GC.KeepAlive(this);
    }

    const int MadvDontNeed = 4;

    [DllImport("libc", SetLastError = true)]
    static extern int madvise(IntPtr address, UIntPtr length, int advice);
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
    public override bool IsMemoryMapped => parts.All(p => p.IsMemoryMapped);

    public override void Read(long index, Span<byte> destination)
    {
        Check(index, destination.Length);
        int k = Array.BinarySearch(starts, index);
        if (k < 0) k = ~k - 1;
        while (starts[k + 1] <= index) k++;      // skip empty parts
        parts[k].Read(index - starts[k], destination);
    }
}
