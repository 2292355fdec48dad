using System.Text.Json;
using System.Text.Json.Nodes;
using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;
using InfluenceSharp.Tests.Methods;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A run trained once through the CLI and shared by a test class, with copies to damage.</summary>
public abstract class TrainedRunFixture : IDisposable
{
    private readonly TempDir dir = new();
    public string Run => dir.File("run");

    protected TrainedRunFixture(params string[] trainArgs)
    {
        var r = CliRunner.Run(new[] { "train", "--out", Run }.Concat(trainArgs).Append("--quiet").ToArray());
        if (r.Code != 0) throw new InvalidOperationException($"fixture training failed: {r.Err}");
    }

    /// <summary>A copy of the run's files (checkpoints and records, no subfolders) to damage.</summary>
    public string Copy(TempDir into)
    {
        string copy = into.File("copy");
        Directory.CreateDirectory(copy);
        foreach (var f in Directory.GetFiles(Run)) File.Copy(f, Path.Combine(copy, Path.GetFileName(f)));
        return copy;
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>A small run shared by the tests below: an MLP trained for one epoch on 5000 embedded
/// examples (two feature-store blocks of 4096), seed 0.</summary>
public sealed class SmallRunFixture() : TrainedRunFixture("--data", "embedded", "--model", "mlp", "--widths", "16", "--epochs", "1",
    "--train-count", "5000", "--seed", "0", "--corrupt", "0.1");

/// <summary>Every option either works or is refused, and user errors are clear one-line errors.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class ValidationHardeningTests : IClassFixture<SmallRunFixture>
{
    private readonly SmallRunFixture fx;
    public ValidationHardeningTests(SmallRunFixture fx) { this.fx = fx; }

    static string[] Split(string line) => line.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    static void AssertRuntimeError((int Code, string Out, string Err) r, params string[] contains)
    {
        Assert.True(r.Code == 1, $"exit {r.Code}\n{r.Out}\n{r.Err}");
        Assert.StartsWith("influence: error: ", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("internal error", r.Err);
        foreach (var c in contains) Assert.Contains(c, r.Err);
    }

    /// <summary>Usage errors (exit 2, the option named, nothing written). {run} is the fixture run.</summary>
    public static TheoryData<string, string> BadCommandLines() => new()
    {
        // Items refused now (each was accepted, or failed only at run time, before).
        { "train --out {tmp}/x --model mlp --epochs 1 --train-count 7", "--train-count" },
        { "data subset --out {tmp}/s --train-count 5", "--train-count" },
        { "data subset --out {tmp}/s --test-count 9", "--test-count" },
        { "build-store --run {run} --methods trak --proj-dim 64", "--proj-dim" },
        { "scores pairwise --run {run} --out {tmp}/o --methods tracin-proj --proj-dim 64 --query-count 2", "--proj-dim" },
        { "explain --run {run} --out {tmp}/e --query 0 --methods tracin-last --layers fc1", "--layers" },
        { "scores self --run {run} --out {tmp}/o --methods tracin-last --layers fc1", "--layers" },
        { "detect-mislabeled --run {run} --out {tmp}/d --methods tracin --damping 0.1", "--damping" },
        { "scores pairwise --run {run} --out {tmp}/o --methods trak --partition-size 100 --query-count 2", "--partition-size" },
        // Already refused by the System.CommandLine options (kept here so they stay refused).
        { "train --out {tmp}/x --model mlp --widths -3", "--widths" },
        { "scores pairwise --run {run} --out {tmp}/o --methods tracin-last --query 99999999999", "--query" },
        { "explain --run {run} --out {tmp}/e --query 99999999999", "--query" },
        { "evaluate lds --run {run} --out {tmp}/l --query-count 0", "--query-count" },
        { "detect-mislabeled --run {run} --out {tmp}/d --methods ekfac --damping NaN", "--damping" },
        { "explain --run {run} --out {tmp}/e --query 0 --top 0", "--top" },
        // Hessian-vector-product influence functions.
        { "scores pairwise --run {run} --out {tmp}/o --methods if-lissa --lissa-scale 0 --query-count 2", "--lissa-scale" },
        { "scores pairwise --run {run} --out {tmp}/o --methods if-cg --damping 0 --query-count 2", "--damping" },
        { "scores pairwise --run {run} --out {tmp}/o --methods if-cg --cg-tol -1 --query-count 2", "--cg-tol" },
        { "scores pairwise --run {run} --out {tmp}/o --methods if-arnoldi --arnoldi-iters 5 --arnoldi-topk 6 --query-count 2", "--arnoldi-topk" },
        { "detect-mislabeled --run {run} --out {tmp}/d --methods ekfac --cg-iters 5", "--cg-iters" },
        { "detect-mislabeled --run {run} --out {tmp}/d --methods if-cg --hessian exact", "--hessian" },
    };

    [Theory]
    [MemberData(nameof(BadCommandLines))]
    public void BadCommandLinesAreUsageErrors(string line, string option)
    {
        using var dir = new TempDir();
        var before = Directory.GetFileSystemEntries(fx.Run, "*", SearchOption.AllDirectories).Order().ToArray();
        var r = CliRunner.Run(Split(line.Replace("{tmp}", dir.Path).Replace("{run}", fx.Run)));
        Assert.True(r.Code == 2, $"influence {line}: exit {r.Code}\n{r.Out}\n{r.Err}");
        Assert.Equal("", r.Out);
        Assert.StartsWith("influence: ", r.Err);
        Assert.Contains(option, r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
        Assert.Equal(before, Directory.GetFileSystemEntries(fx.Run, "*", SearchOption.AllDirectories).Order().ToArray());
    }

    [Fact]
    public void ABalancedSubsetSaysTheMinimum()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("train", "--out", dir.File("x"), "--model", "mlp", "--train-count", "7");
        Assert.Contains("at least 10", r.Err);
        Assert.False(Directory.Exists(dir.File("x")));
    }

    [Fact]
    public void HvpMethodsRunByNameAndAgree()
    {
        // if-explicit and if-cg (Gauss-Newton, tight tolerance) on the fixture's last layer give the same scores.
        using var dir = new TempDir();
        string[] Args(string outDir, string method, params string[] extra) =>
            new[] { "scores", "pairwise", "--run", fx.Run, "--out", outDir, "--methods", method, "--layers", "fc2", "--hessian", "gauss-newton",
                "--damping", "0.01", "--query-count", "3", "--quiet" }.Concat(extra).ToArray();
        var r = CliRunner.Run(Args(dir.File("a"), "if-explicit"));
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run(Args(dir.File("b"), "if-cg", "--cg-tol", "1e-8", "--cg-iters", "500"));
        Assert.True(r.Code == 0, r.Err);
        using var a = Npy.Read(Path.Combine(dir.File("a"), "scores.npy")).to(ScalarType.Float64);
        using var b = Npy.Read(Path.Combine(dir.File("b"), "scores.npy")).to(ScalarType.Float64);
        Assert.Equal(new long[] { 3, 5000 }, a.shape);
        double rel = (a - b).abs().max().item<double>() / a.abs().max().item<double>();
        Assert.True(rel < 1e-3, $"if-cg vs if-explicit: relative difference {rel}");
    }

    [Fact]
    public void DampingReachesTrak()
    {
        using var dir = new TempDir();
        string[] Args(string outDir, params string[] extra) =>
            new[] { "scores", "pairwise", "--run", fx.Run, "--out", outDir, "--methods", "trak", "--query-count", "3", "--quiet" }.Concat(extra).ToArray();
        Assert.Equal(0, CliRunner.Run(Args(dir.File("a"))).Code);
        Assert.Equal(0, CliRunner.Run(Args(dir.File("b"), "--damping", "1000")).Code);
        using var a = Npy.Read(Path.Combine(dir.File("a"), "scores.npy")).to(ScalarType.Float64);
        using var b = Npy.Read(Path.Combine(dir.File("b"), "scores.npy")).to(ScalarType.Float64);
        double rel = (a - b).abs().max().item<double>() / a.abs().max().item<double>();
        Assert.True(rel > 1e-3, $"--damping 1000 changed TRAK's scores by only {rel} (relative)");
    }

    [Fact]
    public void ScoresShardOfAFeatureMethodBuildsItsStoreBlocks()
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir), outDir = dir.File("o");
        string[] Args(params string[] extra) =>
            new[] { "scores", "self", "--run", run, "--out", outDir, "--methods", "tracin-last", "--quiet" }.Concat(extra).ToArray();
        var r = CliRunner.Run(Args("--shard", "1/2"));
        Assert.True(r.Code == 0, r.Err);
        var blocks = Directory.GetFiles(Path.Combine(run, "store"), "*.safetensors", SearchOption.AllDirectories).Select(Path.GetFileName).ToArray();
        Assert.Equal(new[] { "00001.safetensors" }, blocks);
        Assert.False(File.Exists(Path.Combine(outDir, "self_influence.npy")));
        Assert.Contains("run again without --shard", r.Out);
        r = CliRunner.Run(Args());
        Assert.True(r.Code == 0, r.Err);
        Assert.True(File.Exists(Path.Combine(outDir, "self_influence.npy")));
        Assert.Equal(2, Directory.GetFiles(Path.Combine(run, "store"), "*.safetensors", SearchOption.AllDirectories).Length);
    }

    [Fact]
    public void ExplainListsOnlyPositiveProponentsAndNegativeOpponents()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("explain", "--run", fx.Run, "--out", dir.Path, "--methods", "tracin-last", "--query", "0", "--top", "100000", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.Path, "explain-tracin-last.json")))!.AsArray();
        var pro = json[0]!["proponents"]!.AsArray().Select(p => p!["score"]!.GetValue<double>()).ToList();
        var opp = json[0]!["opponents"]!.AsArray().Select(p => p!["score"]!.GetValue<double>()).ToList();
        Assert.NotEmpty(pro); Assert.NotEmpty(opp);
        Assert.All(pro, s => Assert.True(s > 0, $"proponent score {s}"));
        Assert.All(opp, s => Assert.True(s < 0, $"opponent score {s}"));
        Assert.True(pro.Count + opp.Count <= 5000);
    }

    [Fact]
    public void ASidecarWithAnInvalidModelSpecIsAClearError()
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir);
        foreach (var side in Directory.GetFiles(run, "epoch-*.json"))
        {
            var node = JsonNode.Parse(File.ReadAllText(side))!;
            node["model"]!["num_classes"] = -3;
            File.WriteAllText(side, node.ToJsonString());
        }
        AssertRuntimeError(CliRunner.Run("scores", "self", "--run", run, "--out", dir.File("o"), "--methods", "tracin-last", "--quiet"), "num_classes -3", "epoch-");
    }

    [Fact]
    public void NonFiniteWeightsAreNamedWhenLoadingForAttribution()
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir);
        foreach (var w in Directory.GetFiles(run, "epoch-*.safetensors"))
        {
            Dictionary<string, Tensor> tensors;
            using (var f = SafeTensors.Load(w))
            {
                tensors = f.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.clone());
                var meta = f.Metadata;
                tensors["fc1.weight"][0, 0] = float.NaN;
                // As a diverged training writes them: the sidecar records the new file's checksum.
                SafeTensors.Save(w, tensors, meta, sum =>
                {
                    string side = InfluenceSharp.Training.Checkpoint.SidecarPath(w);
                    var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(side))!.AsObject();
                    node["checksum"] = sum;
                    File.WriteAllText(side, node.ToJsonString());
                });
            }
        }
        AssertRuntimeError(CliRunner.Run("detect-mislabeled", "--run", run, "--out", dir.File("d"), "--methods", "ekfac", "--quiet"), "non-finite weights", "fc1.weight");
    }

    [Theory]
    [InlineData("detect/detection.json", "{bad")]
    [InlineData("lds/lds-results.json", "[{\"method\": 1}]")]
    [InlineData("remove/removal.json", "{}")]
    public void ReportNamesAMalformedResultsFile(string file, string content)
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir);
        string path = Path.Combine(run, file);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        AssertRuntimeError(CliRunner.Run("report", "--run", run, "--out", dir.File("report.html")), Path.GetFileName(file), "malformed");
        Assert.False(File.Exists(dir.File("report.html")));
    }

    [Fact]
    public void BuildStoreRecomputesATruncatedBlock()
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir);
        Assert.Equal(0, CliRunner.Run("build-store", "--run", run, "--methods", "tracin-last", "--quiet").Code);
        var block = Directory.GetFiles(Path.Combine(run, "store"), "00000.safetensors", SearchOption.AllDirectories).Single();
        long size = new FileInfo(block).Length;
        using (var f = File.OpenWrite(block)) f.SetLength(size / 2);
        var r = CliRunner.Run("build-store", "--run", run, "--methods", "tracin-last", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Contains("computed 1 blocks; store complete", r.Out);
        Assert.Equal(size, new FileInfo(block).Length);
    }

    [Fact]
    public void LdsReadsEarlierResultsBeforeRetraining()
    {
        using var dir = new TempDir();
        string cache = dir.File("lds");
        Directory.CreateDirectory(cache);
        File.WriteAllText(Path.Combine(cache, "lds-results.json"), "{bad");
        var r = CliRunner.Run("evaluate", "lds", "--run", fx.Run, "--out", cache, "--methods", "tracin-last", "--subsets", "2", "--epochs", "1", "--query-count", "5", "--quiet");
        AssertRuntimeError(r, "lds-results.json");
        Assert.Equal(new[] { "lds-results.json" }, Directory.GetFileSystemEntries(cache).Select(Path.GetFileName).ToArray());
    }

    [Fact]
    public void AnEmptyCifarTestBatchIsCalledEmpty()
    {
        using var dir = new TempDir();
        var rng = new Random(12);   // fixed seed
        for (int i = 1; i <= 5; i++)
        {
            var px = new byte[2 * 3072]; rng.NextBytes(px);
            Cifar10Reader.WriteBatch(dir.File($"data_batch_{i}.bin"), new ImageDataset("c", px, new[] { i % 10, (i + 1) % 10 }, 3, 32, 32, 10));
        }
        File.WriteAllBytes(dir.File("test_batch.bin"), Array.Empty<byte>());
        AssertRuntimeError(CliRunner.Run("data", "info", "--data", "cifar10:" + dir.Path), "test_batch.bin", "empty file");
    }

    [Fact]
    public void CifarSourcesAreRecordedWithAbsolutePaths()
    {
        using var dir = new TempDir();
        var rng = new Random(13);   // fixed seed
        foreach (var name in Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin").Append("test_batch.bin"))
        {
            var px = new byte[2 * 3072]; rng.NextBytes(px);
            Cifar10Reader.WriteBatch(dir.File(name), new ImageDataset("c", px, new[] { 1, 2 }, 3, 32, 32, 10));
        }
        string relative = Path.GetRelativePath(Directory.GetCurrentDirectory(), dir.Path);
        Assert.False(Path.IsPathRooted(relative));
        Assert.Equal("cifar10:" + dir.Path, DataSource.Load("cifar10:" + relative).Source);
        Assert.Equal(dir.Path, DataSource.Load(relative).Source);
    }

    [Fact]
    public void FactorsFromAnotherArchitectureListTheModelsLayers()
    {
        torch.manual_seed(21);   // fixed seed
        var model = new TwoLayerMlp(4, 5, 3).to(ScalarType.Float64);
        var train = new TensorPairDataset(torch.randn(new long[] { 12, 4 }, dtype: ScalarType.Float64), torch.randint(0, 3, new long[] { 12 }));
        var task = new ClassificationTask();
        var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Kfac, TrainBatchSize = 4 }).Fit(train)!;
        var other = new LogisticRegression(4, 3).to(ScalarType.Float64);
        var e = Assert.Throws<InfluenceSharpException>(() => new InfluenceFunction(other, task, factors));
        Assert.Contains("fc:3x5", e.Message);
        Assert.Contains("fc1:5x5", e.Message);
    }
}
