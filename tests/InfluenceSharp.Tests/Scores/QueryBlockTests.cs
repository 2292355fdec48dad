using InfluenceSharp.Methods;
using InfluenceSharp.Scores;

namespace InfluenceSharp.Tests.Scores;

/// <summary>`scores pairwise --query-block N` scores the queries N at a time, each block over every
/// partition of the training set: the scores are those of one pass over all queries, a sharded and
/// resumed job merges the blocks' partials, and a resume with another block size is refused.</summary>
public class QueryBlockTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => Cli.CliRunner.Run(args);

    /// <summary>A small Mlp run on the embedded data (the seed is the training command's default, 0).</summary>
    static string TrainRun(TempDir dir)
    {
        string run = dir.File("run");
        var r = Run("train", "--out", run, "--data", "embedded", "--model", "mlp", "--epochs", "2", "--train-count", "90", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        return run;
    }

    static float[] Scores(string outDir)
    {
        using var t = Npy.Read(Path.Combine(outDir, PartitionedScoring.PairwiseFile));
        Assert.Equal(new long[] { 7, 90 }, t.shape);
        return t.data<float>().ToArray();
    }

    static void AssertSame(float[] expected, float[] actual, string what)
    {
        Assert.All(expected, v => Assert.True(float.IsFinite(v)));
        Assert.True(expected.Any(v => v != 0), "all-zero scores prove nothing");
        double scale = expected.Max(v => Math.Abs(v));
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-5 * scale, $"{what}: score {i} (query {i / 90}, train {i % 90}) is {actual[i]}, one pass gives {expected[i]}");
    }

    [Theory]
    [InlineData("ekfac-astra")]   // solves its queries once per query set and reuses them across partitions
    [InlineData("tracin")]        // a feature method: scores against its stored training features
    [InlineData("if-cg")]
    public void BlocksOfQueriesScoreAsOnePass(string method)
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string[] extra = method switch
        {
            "ekfac-astra" => new[] { "--astra-steps", "2", "--partition-size", "40" },
            "if-cg" => new[] { "--hessian", "gauss-newton", "--cg-iters", "3", "--partition-size", "40" },
            _ => Array.Empty<string>(),
        };
        string one = dir.File("one"), blocks = dir.File("blocks");
        var r = Run(new[] { "scores", "pairwise", "--run", run, "--methods", method, "--query-count", "7", "--query-block", "7", "--out", one, "--quiet" }.Concat(extra).ToArray());
        Assert.True(r.Code == 0, r.Err);
        r = Run(new[] { "scores", "pairwise", "--run", run, "--methods", method, "--query-count", "7", "--query-block", "3", "--out", blocks, "--threads", "1" }.Concat(extra).ToArray());
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("scoring 7 queries in 3 blocks of 3 (--query-block)", r.Err);
        AssertSame(Scores(one), Scores(blocks), $"{method}, blocks of 3 queries");
        Assert.Equal(3, Json.ReadFile<ScoresManifest>(Path.Combine(blocks, PartitionedScoring.ManifestFile)).QueryBlock);
        Assert.Equal(0, Json.ReadFile<ScoresManifest>(Path.Combine(one, PartitionedScoring.ManifestFile)).QueryBlock);
    }

    [Fact]
    public void AShardedJobWithQueryBlocksLeavesOnePartialPerPartitionAndBlockAndMergesThem()
    {
        using var dir = new TempDir();
        string run = TrainRun(dir);
        string factors = dir.File("factors"), one = dir.File("one"), blocks = dir.File("blocks");
        Assert.Equal(0, Run("fit-factors", "--run", run, "--strategy", "ekfac", "--out", factors, "--quiet").Code);
        string[] Args(string outDir, string block, params string[] more) => new[]
        {
            "scores", "pairwise", "--run", run, "--factors", factors, "--per-layer", "--query-count", "7", "--query-block", block,
            "--partition-size", "40", "--out", outDir, "--quiet",
        }.Concat(more).ToArray();
        var r = Run(Args(one, "7"));
        Assert.True(r.Code == 0, r.Err);

        // Shard 0/2 does partitions 0 and 2 (of 3) for each of the 3 query blocks (3, 3, 1 queries).
        r = Run(Args(blocks, "3", "--shard", "0/2"));
        Assert.True(r.Code == 0, r.Err);
        var partials = Directory.GetFiles(Path.Combine(blocks, "partials"), "scores-0*.npy").Select(Path.GetFileName).OrderBy(f => f).ToArray();
        Assert.Equal(new[] { "scores-00000-q00000.npy", "scores-00000-q00001.npy", "scores-00000-q00002.npy",
                             "scores-00002-q00000.npy", "scores-00002-q00001.npy", "scores-00002-q00002.npy" }, partials);
        Assert.Equal(new long[] { 1, 10 }, Npy.ReadHeader(Path.Combine(blocks, "partials", "scores-00002-q00002.npy")).Shape);
        Assert.False(File.Exists(Path.Combine(blocks, PartitionedScoring.PairwiseFile)));

        // Resuming with another block size would mix partials of two shapes: refused, naming it.
        r = Run(Args(blocks, "4"));
        Assert.Equal(1, r.Code);
        Assert.Contains("query_block = 3, this run has query_block = 4", r.Err);
        Assert.Contains("pass --query-block 3 to resume", r.Err);

        r = Run(Args(blocks, "3"));
        Assert.True(r.Code == 0, r.Err);
        AssertSame(Scores(one), Scores(blocks), "ekfac factors, sharded blocks of 3 queries");
        foreach (var layerFile in Directory.GetFiles(one, "scores-*.npy"))
        {
            using var a = Npy.Read(layerFile);
            using var b = Npy.Read(Path.Combine(blocks, Path.GetFileName(layerFile)));
            AssertSame(a.data<float>().ToArray(), b.data<float>().ToArray(), Path.GetFileName(layerFile));
        }
        Assert.False(Directory.Exists(Path.Combine(blocks, "partials")) && Directory.GetFiles(Path.Combine(blocks, "partials"), "*.npy").Length > 0);
    }

    [Fact]
    public void TheDefaultBlockHoldsAGibibyteOfTwoFloat64ParameterVectorsPerQuery()
    {
        Assert.Equal(659, QueryBlocks.Auto(101_770));              // the Mlp 784-128-10
        Assert.Equal(1, QueryBlocks.Auto(11_689_512L * 100));      // larger than the budget: one query at a time
        Assert.Equal(1 << 26, QueryBlocks.Auto(1));
        var r = Run("scores", "pairwise", "--run", "x", "--methods", "ekfac", "--query-block", "0", "--out", "y");
        Assert.Equal(2, r.Code);
        Assert.Contains("--query-block", r.Err);
    }

    /// <summary>The in-memory matrix that `evaluate lds` scores: blocks of queries fill their rows.</summary>
    [Theory]
    [InlineData("ekfac")]
    [InlineData("ekfac-astra")]
    public void TheInMemoryMatrixInQueryBlocksEqualsOnePass(string name)
    {
        using var dir = new TempDir();
        var run = InfluenceSharp.Runs.Run.Open(TrainRun(dir));
        var queries = run.Data.Test.Subset(Enumerable.Range(0, 7).ToArray(), "seven");
        using var one = AttributionMethods.Create(name, run).PairwiseMatrix(queries, run.Data.Train);
        using var blocks = AttributionMethods.Create(name, run).PairwiseMatrix(queries, run.Data.Train, 3);
        Assert.Equal(new long[] { 7, 90 }, blocks.shape);
        AssertSame(one.data<float>().ToArray(), blocks.data<float>().ToArray(), $"{name}, blocks of 3 in memory");
    }

    /// <summary>`explain`'s top-k lists, the queries scored in blocks: the lists of one pass.</summary>
    [Fact]
    public void TopKInQueryBlocksListsWhatOnePassLists()
    {
        using var dir = new TempDir();
        var run = InfluenceSharp.Runs.Run.Open(TrainRun(dir));
        var queries = run.Data.Test.Subset(Enumerable.Range(0, 7).ToArray(), "seven");
        var method = AttributionMethods.Create("ekfac", run);
        var one = method.TopK(queries, run.Data.Train, 5, 7);
        var blocks = method.TopK(queries, run.Data.Train, 5, 3);
        Assert.Equal(7, blocks.Proponents.Length);
        for (int q = 0; q < 7; q++)
        {
            Assert.Equal(one.Proponents[q], blocks.Proponents[q]);
            Assert.Equal(one.Opponents[q], blocks.Opponents[q]);
            for (int j = 0; j < 5; j++)
                Assert.Equal(one.ProponentScores[q][j], blocks.ProponentScores[q][j], 1e-5 * Math.Abs(one.ProponentScores[q][0]));
        }
        Assert.NotEqual(one.Proponents[0], one.Proponents[3]);   // the queries differ, so a block scoring the wrong queries would show
    }
}
