using System.Reflection;
using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Data;

/// <summary>The kind of a --data spec: a keyword (embedded, auto, fashion-mnist), a directory of IDX
/// or CIFAR-10 files, or the prefix of a <see cref="DataReader"/> (imagefolder, csv, ...).</summary>
public sealed record DataKind(string Name)
{
    public static readonly DataKind Embedded = new("embedded"), Auto = new("auto"), FashionMnist = new("fashion-mnist"), Directory = new("directory");
    public static readonly DataKind Cifar10 = new("cifar10"), ImageFolder = new("imagefolder"), Tensors = new("tensors"), Csv = new("csv"), Tinted = new("tinted");

    public override string ToString() => Name;
}

/// <summary>
/// One kind of data a user names by prefix (<c>PREFIX:PATH?key=value&amp;...</c>): its prefix, the
/// options its spec takes after '?', and how it reads a train/test split. <see cref="DataSpec"/> and
/// <see cref="DataSource"/> go through the readers, so a new kind of data is one new reader class:
/// <see cref="DataReaders"/> finds the library's by reflection, and another assembly's by
/// <see cref="DataReaders.Register"/>.
/// </summary>
public abstract class DataReader
{
    /// <summary>The spec's prefix without ':' (e.g. imagefolder).</summary>
    public abstract string Prefix { get; }

    /// <summary>How the spec is written, for help texts (e.g. imagefolder:DIR).</summary>
    public virtual string Usage => Prefix + ":PATH";

    /// <summary>The options its spec takes after '?', in the canonical text's order (none: a '?' is
    /// part of the path).</summary>
    public virtual IReadOnlyList<string> Keys => Array.Empty<string>();

    /// <summary>Listing order (lower first; the library's readers use 10..1000).</summary>
    public virtual int Order => 10000;

    public DataKind Kind => new(Prefix);

    /// <summary>Checks the options that are this reader's own (shared ones such as test-fraction are
    /// checked by <see cref="DataSpec"/>); throws <see cref="InfluenceSharpException"/> naming <paramref name="text"/>.</summary>
    public virtual void Validate(DataSpec spec, string text) { }

    /// <summary>Reads the data. The split's <see cref="DataSplit.Source"/> must be a spec that rebuilds
    /// the same data (absolute paths, resolved options).</summary>
    public abstract DataSplit Load(DataSpec spec, IProgress<ProgressUpdate>? progress);
}

/// <summary>The registry of <see cref="DataReader"/>s by prefix.</summary>
public static class DataReaders
{
    static readonly object gate = new();
    static List<DataReader>? builtIn;
    static readonly List<DataReader> added = new();

    /// <summary>Every reader, in listing order.</summary>
    public static IReadOnlyList<DataReader> All
    {
        get
        {
            lock (gate)
            {
                builtIn ??= typeof(DataReader).Assembly.GetTypes()
                    .Where(t => t.IsClass && !t.IsAbstract && t.IsPublic && typeof(DataReader).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null)
                    .Select(t => (DataReader)Activator.CreateInstance(t)!).ToList();
                return builtIn.Concat(added).OrderBy(r => r.Order).ThenBy(r => r.Prefix, StringComparer.Ordinal).ToList();
            }
        }
    }

    /// <summary>The reader of that prefix (without ':'), or null.</summary>
    public static DataReader? Find(string prefix) => All.FirstOrDefault(r => r.Prefix == prefix);

    /// <summary>Adds a reader; disposing the result removes it again. Refuses a prefix already taken.</summary>
    public static IDisposable Register(DataReader reader)
    {
        ArgumentNullException.ThrowIfNull(reader);
        lock (gate)
        {
            if (Find(reader.Prefix) is not null || reader.Prefix is "embedded" or "auto" or "fashion-mnist" or "directory")
                throw new InfluenceSharpException($"data reader {reader.Prefix}: that prefix is already taken");
            added.Add(reader);
        }
        return new Registration(reader);
    }

    sealed class Registration(DataReader reader) : IDisposable
    {
        public void Dispose() { lock (gate) added.Remove(reader); }
    }
}
