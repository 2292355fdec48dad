using System.Numerics;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

using InfluenceSharp.Methods;

namespace InfluenceSharp.Scores;

/// <summary>
/// Exact streaming top-k per query: fed blocks of a [n_query, n_train] score matrix, one column range
/// at a time (in any order), it keeps only k proponents and k opponents per query, never the matrix.
/// Ties are broken by the lower train index, so the result does not depend on the block order.
/// Fewer than k columns seen gives as many as were seen.
/// </summary>
public sealed class StreamingTopK
{
    private readonly BoundedHeap[] largest, smallest;

    public StreamingTopK(int numQueries, int k)
    {
        if (numQueries < 1) throw new InfluenceSharpException($"top-k: number of queries {numQueries} must be at least 1");
        if (k < 1) throw new InfluenceSharpException($"top-k: k = {k} must be at least 1");
        NumQueries = numQueries; K = k;
        largest = new BoundedHeap[numQueries];
        smallest = new BoundedHeap[numQueries];
        for (int q = 0; q < numQueries; q++)
        {
            largest[q] = new BoundedHeap(k, descending: true);
            smallest[q] = new BoundedHeap(k, descending: false);
        }
    }

    public int NumQueries { get; }
    public int K { get; }
    /// <summary>Number of score columns (training examples) fed so far.</summary>
    public long ColumnsSeen { get; private set; }

    /// <summary>Adds a row-major block [n_query, block.Length / n_query] whose first column is train index <paramref name="offset"/>.</summary>
    public void Add(ReadOnlySpan<float> block, int offset) => AddCore(block, offset);

    /// <inheritdoc cref="Add(ReadOnlySpan{float}, int)"/>
    public void Add(ReadOnlySpan<double> block, int offset) => AddCore(block, offset);

    /// <summary>Adds a block tensor [n_query, cols] (any device, float32 or float64) starting at train index <paramref name="offset"/>.</summary>
    public void Add(Tensor block, int offset)
    {
        if (block.dim() != 2 || block.shape[0] != NumQueries)
            throw new InfluenceSharpException($"top-k: block of shape [{string.Join(", ", block.shape)}] is not [{NumQueries}, cols]");
        using var scope = NewDisposeScope();
        if (block.dtype == ScalarType.Float64)
            AddCore(MemoryMarshal.Cast<byte, double>(block.detach().cpu().contiguous().bytes), offset);
        else
            AddCore(MemoryMarshal.Cast<byte, float>(block.detach().cpu().to_type(ScalarType.Float32).contiguous().bytes), offset);
    }

    private void AddCore<T>(ReadOnlySpan<T> block, int offset) where T : struct, INumberBase<T>
    {
        if (block.Length % NumQueries != 0)
            throw new InfluenceSharpException($"top-k: block of {block.Length} values is not a whole number of rows of {NumQueries} queries");
        if (offset < 0) throw new InfluenceSharpException($"top-k: block offset {offset} is negative");
        int cols = block.Length / NumQueries;
        for (int q = 0; q < NumQueries; q++)
        {
            var row = block.Slice(q * cols, cols);
            var hi = largest[q];
            var lo = smallest[q];
            for (int j = 0; j < cols; j++)
            {
                double s = double.CreateTruncating(row[j]);
                if (double.IsNaN(s))
                    throw new InfluenceSharpException($"top-k: score of query {q} and train example {offset + j} is NaN");
                hi.Offer(s, offset + j);
                lo.Offer(s, offset + j);
            }
        }
        ColumnsSeen += cols;
    }

    public TopKResult Result()
    {
        var p = new int[NumQueries][]; var ps = new double[NumQueries][];
        var o = new int[NumQueries][]; var os = new double[NumQueries][];
        for (int q = 0; q < NumQueries; q++)
        {
            (p[q], ps[q]) = largest[q].Sorted();
            (o[q], os[q]) = smallest[q].Sorted();
        }
        return new TopKResult(p, ps, o, os);
    }

    /// <summary>A fixed-capacity binary heap whose root is the worst kept element, so a candidate is
    /// compared with one value and most are rejected at once.</summary>
    private sealed class BoundedHeap
    {
        private readonly double[] score;
        private readonly int[] index;
        private readonly bool descending;
        private int count;

        public BoundedHeap(int capacity, bool descending)
        {
            score = new double[capacity]; index = new int[capacity]; this.descending = descending;
        }

        // "a ranks before b": larger (or smaller) score, then lower index.
        private bool Before(double sa, int ia, double sb, int ib) =>
            sa == sb ? ia < ib : descending ? sa > sb : sa < sb;

        public void Offer(double s, int i)
        {
            if (count < score.Length)
            {
                int c = count++;
                score[c] = s; index[c] = i;
                while (c > 0)
                {
                    int parent = (c - 1) / 2;
                    if (!Before(score[parent], index[parent], score[c], index[c])) break;
                    Swap(c, parent); c = parent;
                }
                return;
            }
            if (!Before(s, i, score[0], index[0])) return;
            score[0] = s; index[0] = i;
            int k = 0;
            while (true)
            {
                int l = 2 * k + 1, r = l + 1, worst = k;
                if (l < count && Before(score[worst], index[worst], score[l], index[l])) worst = l;
                if (r < count && Before(score[worst], index[worst], score[r], index[r])) worst = r;
                if (worst == k) break;
                Swap(k, worst); k = worst;
            }
        }

        private void Swap(int a, int b)
        {
            (score[a], score[b]) = (score[b], score[a]);
            (index[a], index[b]) = (index[b], index[a]);
        }

        public (int[] Index, double[] Score) Sorted()
        {
            var order = Enumerable.Range(0, count).ToArray();
            Array.Sort(order, (a, b) => a == b ? 0 : Before(score[a], index[a], score[b], index[b]) ? -1 : 1);
            return (order.Select(o => index[o]).ToArray(), order.Select(o => score[o]).ToArray());
        }
    }
}
