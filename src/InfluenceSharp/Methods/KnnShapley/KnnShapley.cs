using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods.LastLayer;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.KnnShapley;

/// <summary>Settings of <see cref="KnnShapley"/>.</summary>
public sealed record KnnShapleyOptions
{
    /// <summary>K of the K-nearest-neighbour classifier whose accuracy on a query is the utility.</summary>
    public int Neighbors { get; init; } = 5;
    /// <summary>The Linear layer whose input is the feature space; null = the model's last Linear layer.</summary>
    public string? Layer { get; init; }
    /// <summary>Training examples per attribution batch (the command line's --batch-size).</summary>
    public int TrainBatchSize { get; init; } = 256;
    /// <summary>Queries whose values are computed together (one distance block [q, n]).</summary>
    public int QueryBlock { get; init; } = 256;
    public IProgress<ProgressUpdate>? Progress { get; init; }
}

/// <summary>
/// Exact KNN-Shapley values (Jia et al. 2019): the Shapley value of every training example for the
/// utility "fraction of the K nearest training neighbours of the query that carry the query's label",
/// in the model's penultimate-layer feature space (the input of its last Linear layer), Euclidean
/// distance. Per query the training set is sorted by distance (O(N log N)) and the values follow
/// from the recursion s_(N) = 1[y_(N) = y]/N, s_(i) = s_(i+1) + (1[y_(i) = y] − 1[y_(i+1) = y])/K ·
/// min(K, i)/i over the sorted order. Positive = the example helps classify the query correctly.
/// Self-influence: minus the example's mean value over the other training examples as queries (each
/// query left out of its own training set), so mislabeled examples, which hurt their neighbours,
/// score high; O(N² log N).
/// </summary>
public sealed class KnnShapley : IAttributionMethod, IDisposable
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly TrackedLayer layer;
    private (IDataset Data, int Count, Tensor Features, long[] Labels)? cachedTrain;

    public KnnShapley(nn.Module<Tensor, Tensor> model, KnnShapleyOptions? options = null)
    {
        this.model = model;
        Options = options ?? new KnnShapleyOptions();
        if (Options.Neighbors < 1) throw new InfluenceSharpException($"knn-shapley: K = {Options.Neighbors}: must be at least 1");
        if (Options.TrainBatchSize < 1 || Options.QueryBlock < 1) throw new InfluenceSharpException("knn-shapley: batch sizes must be at least 1");
        layer = LastLayerFeatures.FinalLinear(model, Options.Layer);
    }

    public string Name => "knn-shapley";
    public KnnShapleyOptions Options { get; }

    /// <summary>KNN-Shapley values of training examples with labels <paramref name="trainLabels"/>,
    /// ordered by distance to one query (<paramref name="order"/>: nearest first, indices into the
    /// training set), for a query of label <paramref name="label"/>, into <paramref name="values"/>.
    /// Examples not in <paramref name="order"/> keep their value.</summary>
    public static void Values(ReadOnlySpan<long> order, long[] trainLabels, long label, int k, Span<double> values)
    {
        int n = order.Length;
        if (n == 0) return;
        double next = trainLabels[order[n - 1]] == label ? 1.0 / n : 0;
        values[(int)order[n - 1]] = next;
        for (int i = n - 2; i >= 0; i--)                     // 0-based position i = rank i + 1
        {
            int mi = trainLabels[order[i]] == label ? 1 : 0, mn = trainLabels[order[i + 1]] == label ? 1 : 0;
            next += (double)(mi - mn) / k * Math.Min(k, i + 1) / (i + 1);
            values[(int)order[i]] = next;
        }
    }

    private (Tensor Features, long[] Labels) Train(IDataset train)
    {
        if (cachedTrain is { } c && ReferenceEquals(c.Data, train) && c.Count == train.Count) return (c.Features, c.Labels);
        cachedTrain?.Features.Dispose();
        var (f, logits) = LastLayerFeatures.Compute(model, layer, train, Options.TrainBatchSize, Name);
        logits.Dispose();
        var labels = LastLayerFeatures.Labels(train);
        cachedTrain = (train, train.Count, f, labels);
        return (f, labels);
    }

    /// <summary>Nearest-first orders [q, n] of the training examples for query features [q, d].</summary>
    private static long[] Orders(Tensor queries, Tensor train)
    {
        using var scope = NewDisposeScope();
        var d = torch.cdist(queries, train);
        var (_, idx) = d.sort(1, stable: true);
        return idx.contiguous().data<long>().ToArray();
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var (tf, tl) = Train(train);
        var (qf, ql) = LastLayerFeatures.Compute(model, layer, queries, Options.TrainBatchSize, Name);
        var qLabels = LastLayerFeatures.Labels(queries);
        ql.Dispose();
        int n = train.Count, nq = queries.Count;
        var values = new double[(long)nq * n];
        using var bar = ProgressReporter.Start(Options.Progress, "knn-shapley queries", nq, "q");
        for (int b = 0; b < nq; b += Options.QueryBlock)
        {
            int m = Math.Min(Options.QueryBlock, nq - b);
            var orders = Orders(qf.narrow(0, b, m), tf);
            Parallel.For(0, m, j => Values(orders.AsSpan(j * n, n), tl, qLabels[b + j], Options.Neighbors, values.AsSpan((b + j) * n, n)));
            bar?.Update(b + m);
        }
        qf.Dispose();
        using var all = torch.tensor(values, new long[] { nq, n }, dtype: ScalarType.Float64);
        const int block = 4096;
        for (int off = 0; off < n; off += block)
        {
            using var scope = NewDisposeScope();
            sink(off, all.narrow(1, off, Math.Min(block, n - off)).to(ScalarType.Float32).contiguous());
        }
    }

    public double[] SelfInfluence(IDataset train)
    {
        var (tf, tl) = Train(train);
        int n = train.Count;
        var total = new double[n];
        using var bar = ProgressReporter.Start(Options.Progress, "knn-shapley self-influence", n);
        var v = new double[n];
        for (int b = 0; b < n; b += Options.QueryBlock)
        {
            int m = Math.Min(Options.QueryBlock, n - b);
            var orders = Orders(tf.narrow(0, b, m), tf);
            for (int j = 0; j < m; j++)
            {
                int q = b + j;
                // The query leaves itself out of its training set (else it is its own nearest neighbour).
                var order = orders.AsSpan(j * n, n).ToArray().Where(i => i != q).ToArray();
                Array.Clear(v);
                Values(order, tl, tl[q], Options.Neighbors, v);
                for (int i = 0; i < n; i++) total[i] += v[i];
            }
            bar?.Update(b + m);
        }
        double scale = n > 1 ? 1.0 / (n - 1) : 1.0;
        return total.Select(t => -t * scale).ToArray();
    }

    public void Dispose() => cachedTrain?.Features.Dispose();
}
