using System.Text.Json.Nodes;
using InfluenceSharp.Data;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Runs;
using InfluenceSharp.Scores;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A method defined only here, in the test assembly: +scale when the query's and the training
/// example's labels agree, −scale otherwise. Registering it is all it takes for the command line to
/// offer it, with its own --throwaway-scale option.</summary>
public sealed class ThrowawayMethod : MethodDescriptor
{
    public static readonly MethodParameter Scale = new("throwaway-scale", "score of agreeing labels", "1", Min: 0);

    public override string Name => "throwaway";
    public override MethodOption Uses => MethodOption.TrainBatchSize;
    public override IReadOnlyList<MethodParameter> Parameters => new[] { Scale };

    public override IAttributionMethod Build(Run run, MethodSettings settings, MethodContext context) =>
        new LabelAgreement(settings.ParameterDouble(Scale), settings.TrainBatchSize);

    sealed class LabelAgreement(double scale, int batch) : IAttributionMethod
    {
        public string Name => "throwaway";

        public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
        {
            using var yq = queries.Targets(Enumerable.Range(0, queries.Count).ToArray());
            for (int start = 0; start < train.Count; start += batch)
            {
                using var scope = NewDisposeScope();
                var yz = train.Targets(Enumerable.Range(start, Math.Min(batch, train.Count - start)).ToArray());
                var agree = yq.unsqueeze(1).eq(yz.unsqueeze(0)).to(ScalarType.Float32);
                sink(start, (agree * 2 - 1) * scale);
            }
        }

        public double[] SelfInfluence(IDataset train) => Enumerable.Repeat(scale, train.Count).ToArray();
    }
}

/// <summary>A converged logistic regression (L-BFGS with weight decay 0.01) on 200 embedded examples.</summary>
public sealed class ConvergedRunFixture() : TrainedRunFixture("--data", "embedded", "--model", "logreg", "--train-count", "200",
    "--weight-decay", "0.01", "--lbfgs-tol", "1e-4", "--threads", "1");

/// <summary>Methods come from the library's registry: the command line offers, refuses and builds
/// whatever is registered, a library user gets the same method by name with the same defaults, and
/// manifests use the command line's names (older names still load).</summary>
[Collection("cli")]   // Console redirection is process-wide
public class MethodRegistryTests : IClassFixture<ConvergedRunFixture>
{
    private readonly ConvergedRunFixture fx;
    public MethodRegistryTests(ConvergedRunFixture fx) { this.fx = fx; }

    [Fact]
    public void AMethodRegisteredFromAnotherAssemblyRunsThroughTheCommandLine()
    {
        using var dir = new TempDir();
        Assert.Equal(2, CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "throwaway", "--out", dir.File("none")).Code);
        using (AttributionMethods.Register(new ThrowawayMethod()))
        {
            var help = CliRunner.Run("scores", "pairwise", "--help");
            Assert.Contains("throwaway", help.Out);
            Assert.Contains("--throwaway-scale", help.Out);

            var r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "throwaway", "--throwaway-scale", "2.5",
                "--out", dir.File("s"), "--query-count", "4", "--quiet");
            Assert.True(r.Code == 0, r.Err);
            var run = Run.Open(fx.Run);
            using var scores = Npy.Read(Path.Combine(dir.File("s"), "scores.npy"));
            Assert.Equal(new long[] { 4, run.Data.Train.Count }, scores.shape);
            var s = scores.to(ScalarType.Float64).data<double>().ToArray();
            for (int q = 0; q < 4; q++)
                for (int z = 0; z < run.Data.Train.Count; z++)
                    Assert.Equal(run.Data.Test.Labels[q] == run.Data.Train.Labels[z] ? 2.5 : -2.5, s[q * run.Data.Train.Count + z], 6);
            var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("s"), "manifest.json")))!;
            Assert.Equal("throwaway", manifest["method"]!.GetValue<string>());
            Assert.Contains(";throwaway-scale=2.5", manifest["settings"]!["settings"]!.GetValue<string>());

            // Its option is refused where no chosen method uses it, and checked like any other.
            r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "ekfac", "--throwaway-scale", "2", "--out", dir.File("x"));
            Assert.Equal(2, r.Code);
            Assert.Contains("--throwaway-scale: none of the methods ekfac uses it (only throwaway)", r.Err);
            r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "throwaway", "--throwaway-scale", "-1", "--out", dir.File("x"));
            Assert.Equal(2, r.Code);
            Assert.Contains("--throwaway-scale -1: must be at least 0", r.Err);

            // Detection takes it as well (self-influence = the scale).
            r = CliRunner.Run("detect-mislabeled", "--run", fx.Run, "--methods", "throwaway", "--out", dir.File("d"), "--quiet");
            Assert.True(r.Code == 0, r.Err);
            Assert.True(File.Exists(Path.Combine(dir.File("d"), "self_influence-throwaway.npy")));
        }
        Assert.DoesNotContain("throwaway", AttributionMethods.Names);
        Assert.DoesNotContain("throwaway", CliRunner.Run("scores", "pairwise", "--help").Out);
    }

    [Fact]
    public void EveryPathDampsAConvergedRunWithItsWeightDecay()
    {
        using var dir = new TempDir();
        var r = CliRunner.Run("fit-factors", "--run", fx.Run, "--strategy", "ekfac", "--out", dir.File("f"), "--quiet");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--factors", dir.File("f"), "--out", dir.File("byfactors"), "--query-count", "5", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("byfactors"), "manifest.json")))!;
        Assert.Equal("0.01", manifest["settings"]!["damping"]!.GetValue<string>());
        Assert.Equal("ekfac", manifest["method"]!.GetValue<string>());
        r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "ekfac", "--out", dir.File("byname"), "--query-count", "5", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        using var a = Npy.Read(Path.Combine(dir.File("byfactors"), "scores.npy"));
        using var b = Npy.Read(Path.Combine(dir.File("byname"), "scores.npy"));
        Assert.True(allclose(a, b, rtol: 1e-4, atol: 1e-6), "scores --factors and scores --methods ekfac differ");

        // A library user gets the same method, with the same defaults, by name.
        var run = Run.Open(fx.Run);
        var queries = run.Data.Test.Subset(Enumerable.Range(0, 5).ToArray());
        using var c = AttributionMethods.Create("ekfac", run, new MethodSettings { UseStore = false }).PairwiseMatrix(queries, run.Data.Train);
        Assert.True(allclose(b, c, rtol: 1e-4, atol: 1e-6), "AttributionMethods.Create(\"ekfac\") differs from the command line's ekfac");
    }

    [Fact]
    public void AstraNeumannStepChoosesAstrasOwnIteration()
    {
        var run = Run.Open(fx.Run);
        var pcg = (InfluenceSharp.Methods.Astra.EkfacAstra)AttributionMethods.Create("ekfac-astra", run, new MethodSettings { UseStore = false });
        Assert.Equal(InfluenceSharp.Methods.Astra.AstraIteration.Pcg, pcg.Options.Iteration);
        var settings = new MethodSettings { UseStore = false }.WithParameter("astra-steps", "3").WithParameter("astra-neumann-step", "0.05");
        var astra = (InfluenceSharp.Methods.Astra.EkfacAstra)AttributionMethods.Create("ekfac-astra", run, settings);
        Assert.Equal(InfluenceSharp.Methods.Astra.AstraIteration.Neumann, astra.Options.Iteration);
        // x0 = η M⁻¹b, then x ← x + η M⁻¹(b − (C + λI)x) three times, written out by hand (η small: on this
        // run M⁻¹(C + λI) has eigenvalues far above 2, where η = 0.5 diverges).
        var gen = new TorchSharp.torch.Generator((ulong)TestSeed.For());
        var b = TorchSharp.torch.randn(new long[] { 2, astra.Curvature.NumParams }, dtype: ScalarType.Float64, generator: gen);
        double lambda = astra.Options.System.Damping;
        var x = astra.Precondition(b) * 0.05;
        for (int k = 0; k < 3; k++) x = x + 0.05 * astra.Precondition(b - astra.Curvature.Apply(x) - lambda * x);
        var actual = astra.InverseHvp(b);
        double err = (actual - x).norm().item<double>() / x.norm().item<double>();
        Assert.True(err < 1e-10, $"--astra-neumann-step 0.05: relative error {err:G3} against the hand-written iteration");
        Assert.Equal(3, astra.LastReport!.Steps);
        var r = CliRunner.Run("scores", "pairwise", "--run", fx.Run, "--methods", "ekfac-astra", "--astra-neumann-step", "-1", "--query-count", "2", "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("--astra-neumann-step", r.Err);

        // --astra-neumann-batch reaches the solver; with conjugate gradient it is refused, by name.
        var mb = (InfluenceSharp.Methods.Astra.EkfacAstra)AttributionMethods.Create("ekfac-astra", run, settings.WithParameter("astra-neumann-batch", "7"));
        Assert.Equal(7, mb.Options.NeumannBatchSize);
        using var dir = new TempDir();
        r = CliRunner.Run("scores", "pairwise", "--run", fx.Copy(dir), "--methods", "ekfac-astra", "--astra-neumann-batch", "7", "--query-count", "2",
            "--out", dir.File("s"), "--quiet");
        Assert.Equal(2, r.Code);
        Assert.Contains("--astra-neumann-batch", r.Err);
        Assert.Contains("--astra-neumann-step", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.False(Directory.Exists(dir.File("s")), "a refused command left output behind");
    }

    [Fact]
    public void ManifestsUseTheCommandLineNamesAndOlderNamesStillLoad()
    {
        using var dir = new TempDir();
        string run = fx.Copy(dir);
        var r = CliRunner.Run("scores", "pairwise", "--run", run, "--methods", "tracin-last", "--out", dir.File("s"), "--query-count", "3", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var storeManifest = Directory.GetFiles(Path.Combine(run, "store"), "manifest.json", SearchOption.AllDirectories).Single();
        Assert.Equal("tracin-last", JsonNode.Parse(File.ReadAllText(storeManifest))!["method"]!.GetValue<string>());
        Assert.Equal("tracin-last", JsonNode.Parse(File.ReadAllText(Path.Combine(dir.File("s"), "manifest.json")))!["method"]!.GetValue<string>());

        // A store whose manifest names the method as older versions did is still used as it is.
        File.WriteAllText(storeManifest, File.ReadAllText(storeManifest).Replace("\"tracin-last\"", "\"tracin-fast\"", StringComparison.Ordinal));
        var before = File.GetLastWriteTimeUtc(storeManifest);
        r = CliRunner.Run("scores", "pairwise", "--run", run, "--methods", "tracin-last", "--out", dir.File("s2"), "--query-count", "3", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(before, File.GetLastWriteTimeUtc(storeManifest));
        using (var x = Npy.Read(Path.Combine(dir.File("s"), "scores.npy")))
        using (var y = Npy.Read(Path.Combine(dir.File("s2"), "scores.npy")))
            Assert.True(allclose(x, y, rtol: 0, atol: 0));

        // Scores and feature-store manifests with the older names match the new ones.
        ScoresManifest Scores(string method) => new()
        {
            Kind = "pairwise", Method = method, Settings = new(), ModelFingerprint = "m", TrainFingerprint = "t", TrainCount = 1, PartitionSize = 1,
        };
        foreach (var (old, now) in new[] { ("if-ekfac", "ekfac"), ("if-kfac", "kfac"), ("if-diagonal", "diagonal"), ("if-identity", "identity"),
                     ("tracin-fast", "tracin-last"), ("tracin-randproj", "tracin-proj"), ("tracin-cp", "tracin") })
        {
            Scores(old).Require(Scores(now), "manifest.json");
            Assert.Equal(now, MethodNames.Canonical(old));
        }
        Assert.Throws<InfluenceSharpException>(() => Scores("if-kfac").Require(Scores("ekfac"), "manifest.json"));
        FeatureStoreManifest Store(string method) => new() { Method = method, Settings = new(), Models = new[] { "m" }, DataFingerprint = "d", Count = 1, BlockSize = 1, Dim = 1 };
        Store("tracin-randproj").Require(Store("tracin-proj"), "manifest.json");
        Assert.Throws<InfluenceSharpException>(() => Store("tracin-fast").Require(Store("tracin-proj"), "manifest.json"));
    }

    [Fact]
    public void TheCommandLineNamesNoMethodItself()
    {
        string? root = AppContext.BaseDirectory;
        while (root is not null && !Directory.Exists(Path.Combine(root, "src", "InfluenceSharp.Cli"))) root = Path.GetDirectoryName(root);
        Assert.NotNull(root);
        var names = AttributionMethods.Names;
        var builtIn = new[] { "ekfac", "ekfac-last", "kfac", "diagonal", "identity", "if-explicit", "if-cg", "if-lissa", "if-arnoldi",
            "tracin", "tracin-last", "tracin-proj", "graddot", "gradcos", "trak" };
        Assert.Equal(builtIn, names.Where(builtIn.Contains));   // all of them, in this order (others may join)
        foreach (var file in Directory.GetFiles(Path.Combine(root, "src", "InfluenceSharp.Cli"), "*.cs", SearchOption.AllDirectories))
        {
            if (file.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)) continue;
            string text = File.ReadAllText(file);
            foreach (var n in names)
                Assert.False(text.Contains($"\"{n}\"", StringComparison.Ordinal), $"{file} names the method \"{n}\"; take it from the registry");
        }
    }
}
