using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Tests.Methods;
using TorchSharp;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Index;

/// <summary>The IVF inner-product index against a float64 brute-force top-k (the oracle).</summary>
public class FeatureIndexTests
{
    private readonly ITestOutputHelper output;
    public FeatureIndexTests(ITestOutputHelper output) { this.output = output; }

    /// <summary>Structured rows like real features: 30 clusters, a rank-6 component, noise, and row
    /// norms spread over a factor of ~5 (float32 [n, d]).</summary>
    static Tensor Rows(int n, int d, Tensor centers, Tensor basis)
    {
        var label = torch.randint(0, centers.shape[0], new long[] { n });
        var x = centers.index_select(0, label) + torch.randn(n, basis.shape[0]).matmul(basis) * 0.5 + torch.randn(n, d) * 0.2;
        return (x * torch.exp(torch.randn(n, 1) * 0.4)).to(ScalarType.Float32);
    }

    static IndexSource Source(Tensor rows, int blockSize, string fingerprint = "fp-a") =>
        new((int)rows.shape[0], rows.shape[1], (int)((rows.shape[0] + blockSize - 1) / blockSize), b =>
        {
            int start = b * blockSize;
            return (start, rows.narrow(0, start, Math.Min(blockSize, rows.shape[0] - start)).clone());
        }, fingerprint, "test rows");

    /// <summary>Exact top-k by a float64 scan (ties: lower index first).</summary>
    static int[][] Exact(Tensor rows, Tensor queries, int k, bool largest)
    {
        var s = queries.to(ScalarType.Float64).matmul(rows.to(ScalarType.Float64).mT);
        if (!largest) s = -s;
        var result = new int[queries.shape[0]][];
        for (int q = 0; q < result.Length; q++)
        {
            var row = s[q].data<double>().ToArray();
            result[q] = Enumerable.Range(0, row.Length).OrderByDescending(i => row[i]).ThenBy(i => i).Take(k).ToArray();
        }
        return result;
    }

    static double Recall(int[][] found, int[][] exact) =>
        found.Zip(exact).Average(p => (double)p.First.Intersect(p.Second).Count() / p.Second.Length);

    [Theory]
    [InlineData(IndexProbing.Reduction)]
    [InlineData(IndexProbing.InnerProduct)]
    public void RecallAtTenIsHighWhenProbingAFifthOfTheListsAndExactWhenProbingAll(IndexProbing probing)
    {
        int seed = TestSeed.For() + (int)probing;
        output.WriteLine($"seed {seed} ({TestSeed.Describe()})");
        torch.manual_seed(seed);
        const int n = 3000, d = 24;
        var centers = torch.randn(30, d) * 2; var basis = torch.randn(6, d);
        var rows = Rows(n, d, centers, basis);
        var queries = Rows(40, d, centers, basis);
        using var dir = new TempDir();
        using var index = FeatureIndex.Build(dir.Path, Source(rows, 512), new IndexOptions { Lists = 50, Seed = 3, Probing = probing });
        Assert.Equal(n, Enumerable.Range(0, 50).Sum(index.ListSize));

        var hits = index.Search(queries, 10, probe: 10);
        double recall = Recall(hits.Indices, Exact(rows, queries, 10, true));
        double fraction = hits.CandidatesScored / (double)(n * 40L);
        output.WriteLine($"{probing}: recall@10 {recall:F3}, fraction of rows scored {fraction:F3}");
        Assert.True(recall >= 0.9, $"recall@10 {recall:F3} < 0.9 at probe 10/50 ({TestSeed.Describe()})");
        Assert.True(fraction < 0.4, $"scored {fraction:P0} of the rows at probe 10/50");
        // The scores returned are the rows' inner products with the query.
        var s0 = queries[0].to(ScalarType.Float64).matmul(rows[hits.Indices[0][0]].to(ScalarType.Float64)).item<double>();
        Assert.Equal(s0, hits.Scores[0][0], 1e-3 * Math.Abs(s0) + 1e-5);

        // Probing every list scans every row: exactly the brute-force top-k, largest and smallest.
        var all = index.Search(queries, 10, probe: 50);
        Assert.Equal(n * 40L, all.CandidatesScored);
        Assert.Equal(Exact(rows, queries, 10, true), all.Indices);
        var low = index.Search(queries, 10, probe: 50, largest: false);
        Assert.Equal(Exact(rows, queries, 10, false), low.Indices);
        Assert.True(low.Scores.All(r => r.Zip(r.Skip(1)).All(p => p.First <= p.Second)), "smallest scores are not ascending");
    }

    [Fact]
    public void SameSeedGivesTheSameIndexAndAnInterruptedBuildNeverLooksCompleteAndResumes()
    {
        int seed = TestSeed.For();
        output.WriteLine(TestSeed.Describe());
        torch.manual_seed(seed);
        var rows = Rows(700, 8, torch.randn(30, 8) * 2, torch.randn(6, 8));
        using var a = new TempDir(); using var b = new TempDir();
        var o = new IndexOptions { Lists = 12, Seed = 5 };
        using (FeatureIndex.Build(a.Path, Source(rows, 100), o)) { }

        // Fail while writing the lists (the third pass over the rows): no index.json, a clear error.
        int calls = 0;
        var src = Source(rows, 100);
        var failing = src with { Block = blk => ++calls > 2 * src.BlockCount + 3 ? throw new IOException("disk gone") : src.Block(blk) };
        Assert.Throws<IOException>(() => FeatureIndex.Build(b.Path, failing, o));
        Assert.False(File.Exists(Path.Combine(b.Path, FeatureIndex.ManifestFile)));
        var e = Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Open(b.Path, "fp-a"));
        Assert.Contains("did not finish", e.Message);
        // The rerun resumes (k-means and the assignments are kept) and gives the same files.
        calls = 0;
        var counting = src with { Block = blk => { calls++; return src.Block(blk); } };
        using (FeatureIndex.Build(b.Path, counting, o)) { }
        Assert.Equal(src.BlockCount, calls);    // only the write pass read the rows again
        foreach (var f in new[] { "centroids.safetensors", "lists.safetensors", "vectors.npy" })
            Assert.Equal(File.ReadAllBytes(Path.Combine(a.Path, f)), File.ReadAllBytes(Path.Combine(b.Path, f)));
        Assert.False(Directory.Exists(Path.Combine(b.Path, "partials")));
    }

    [Fact]
    public void BadArgumentsAreRefusedNamingThem()
    {
        torch.manual_seed(TestSeed.For());
        var rows = torch.randn(50, 4);
        using var dir = new TempDir();
        Assert.Contains("--lists 51", Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Build(dir.Path, Source(rows, 16), new IndexOptions { Lists = 51 })).Message);
        Assert.Contains("--lists -1", Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Build(dir.Path, Source(rows, 16), new IndexOptions { Lists = -1 })).Message);
        Assert.Contains("iterations", Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Build(dir.Path, Source(rows, 16), new IndexOptions { Lists = 4, Iterations = 0 })).Message);
        Assert.Contains("no index", Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Open(dir.Path, "fp-a")).Message);
        using var index = FeatureIndex.Build(dir.Path, Source(rows, 16), new IndexOptions { Lists = 5 });
        Assert.Contains("--probe 6", Assert.Throws<InfluenceSharpException>(() => index.Search(torch.randn(2, 4), 3, 6)).Message);
        Assert.Contains("--probe 0", Assert.Throws<InfluenceSharpException>(() => index.Search(torch.randn(2, 4), 3, 0)).Message);
        Assert.Contains("--top 0", Assert.Throws<InfluenceSharpException>(() => index.Search(torch.randn(2, 4), 0, 2)).Message);
        Assert.Contains("[n, 4]", Assert.Throws<InfluenceSharpException>(() => index.Search(torch.randn(2, 5), 3, 2)).Message);
        // Another fingerprint: refused as stale.
        Assert.Contains("stale", Assert.Throws<InfluenceSharpException>(() => FeatureIndex.Open(dir.Path, "fp-b")).Message);
    }

    static TensorPairDataset Data(int n) =>
        new(torch.randn(n, 5, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { n }));

    static FeatureMethod Method(string kind, string dir)
    {
        var cps = new[] { 0.3, 0.1 }.Select(e => new TracInCheckpoint(new TwoLayerMlp(5, 6, 3).to(ScalarType.Float64), e)).ToList();
        var proj = new ProjectionOptions { Layout = ProjectionLayout.Dense, Dim = 16, Seed = 4 };
        return kind switch
        {
            "trak" => new Trak(cps.Select(c => c.Model).ToList(), new TrakOptions { StoreDirectory = dir, BlockSize = 16, TrainBatchSize = 8, Projection = proj }),
            "tracin-last" => new TracInCPFast(cps, null, new TracInFastOptions { StoreDirectory = dir, BlockSize = 16, TrainBatchSize = 8 }),
            "tracin" => new TracInCP(cps, null, new TracInOptions { StoreDirectory = dir, BlockSize = 16, TrainBatchSize = 8 }),
            _ => new TracInCPFastRandProj(cps, null, new TracInRandProjOptions { StoreDirectory = dir, BlockSize = 16, TrainBatchSize = 8, Projection = proj }),
        };
    }

    [Theory]
    [InlineData("trak")]
    [InlineData("tracin-proj")]
    [InlineData("tracin-last")]
    [InlineData("tracin")]
    public void MethodIndexProbingAllListsIsTheExactTopKAndAChangedStoreIsRefused(string kind)
    {
        int seed = TestSeed.For() + kind.Length;
        output.WriteLine($"seed {seed}");
        torch.manual_seed(seed);
        var train = Data(60); var queries = Data(5);
        using var dir = new TempDir();
        using var m = Method(kind, dir.Path);
        var exact = m.PairwiseMatrix(queries, train);      // [5, 60] float64 oracle from the store scan
        using (var index = m.BuildIndex(train, new IndexOptions { Lists = 6, Seed = 1 }))
        {
            var (r, scored) = m.TopKIndexed(queries, train, index, 4, probe: 6);
            Assert.Equal(2L * 5 * 60, scored);
            for (int q = 0; q < 5; q++)
            {
                var row = exact[q].to(ScalarType.Float64).data<double>().ToArray();
                var hi = Enumerable.Range(0, 60).OrderByDescending(i => row[i]).Take(4).ToArray();
                var lo = Enumerable.Range(0, 60).OrderBy(i => row[i]).Take(4).ToArray();
                Assert.Equal(hi, r.Proponents[q]);
                Assert.Equal(lo, r.Opponents[q]);
                for (int j = 0; j < 4; j++)
                    Assert.Equal(row[hi[j]], r.ProponentScores[q][j], 1e-4 * Math.Abs(row[hi[j]]) + 1e-6);
            }
        }
        // The store changes (block 1 recomputed): the index is refused as stale until rebuilt.
        File.Delete(Path.Combine(dir.Path, "blocks", "00001.safetensors"));
        Thread.Sleep(20);
        Assert.Equal(1, m.BuildStore(train));
        var e = Assert.Throws<InfluenceSharpException>(() => m.OpenIndex(train));
        Assert.Contains("stale", e.Message);
        using (m.BuildIndex(train, new IndexOptions { Lists = 6, Seed = 1 })) { }
        using (m.OpenIndex(train)) { }
    }

    [Fact]
    public void MethodsWithoutAnInnerProductFormHaveNoIndex()
    {
        torch.manual_seed(TestSeed.For());
        using var dir = new TempDir();
        using var m = GradCos.Create(new TwoLayerMlp(5, 6, 3).to(ScalarType.Float64), null, new TracInOptions { StoreDirectory = dir.Path });
        Assert.False(m.HasInnerProductForm);
        Assert.Contains("no index", Assert.Throws<InfluenceSharpException>(() => m.IndexDirectory(Data(10))).Message);
    }
}
