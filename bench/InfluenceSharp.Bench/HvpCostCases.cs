using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>
/// Cost of the Hessian-vector-product influence functions: seconds and peak memory per
/// solver, and accuracy as the Spearman correlation of the pairwise scores with if-explicit's, for the
/// Mlp (784-128-10) and the SmallCnn on the first 5,000 Fashion-MNIST training images and the first 100
/// test images as queries. Each (model, layer set, method) is its own bench case, so the harness runs it in
/// its own process and its peak RSS (VmHWM) is its own; the group <c>hvp-solvers</c> runs them all.
/// <list type="bullet">
/// <item>Layer set <c>fc2</c> (the last layer, 1,290 parameters): every method, if-explicit included;
/// if-explicit writes its scores to <see cref="Dir"/> and every later method of the same model reports its
/// Spearman correlation with them.</item>
/// <item>Layer set <c>full</c> (every Linear/Conv2d: Mlp 101,770, SmallCnn 206,922 parameters): if-explicit
/// is infeasible (a P × P Hessian); the other methods with iteration budgets that fit a bench run.</item>
/// </list>
/// Curvature: the Gauss-Newton matrix of the mean training loss plus L2·I with L2 = the training weight
/// decay (5e-4), damping λ = 0.01 for every method (EK-FAC too), so all invert the same damped curvature
/// up to their approximations. Models: trained by <c>hvp-setup</c> (5 epochs on the 5,000 examples, SGD as
/// the CLI's defaults) and loaded from <see cref="Dir"/> by every case (trained there if missing).
/// </summary>
public static class HvpCostCases
{
    const int NTrain = 5000, NQueries = 100;
    const double L2 = 5e-4, Damping = 0.01;

    /// <summary>Where the trained models and the if-explicit scores live between the case processes.</summary>
    static string Dir => Environment.GetEnvironmentVariable("HVP_BENCH_DIR") ?? Path.Combine(Path.GetTempPath(), "influencesharp-hvp-bench");

    static readonly string[] Archs = { "mlp", "smallcnn" };

    /// <summary>The cases per model. if-cg on the full SmallCnn is not run: one CG iteration is 100 Gauss-Newton
    /// products over the 5,000 examples (each about as costly as one Arnoldi iteration of that model,
    /// which the if-arnoldi case measures), several minutes per iteration on this machine.</summary>
    static IEnumerable<(string Set, string Method)> Plan(string arch)
    {
        foreach (var m in new[] { "if-explicit", "if-cg", "if-lissa", "if-arnoldi", "ekfac", "identity" }) yield return ("fc2", m);
        foreach (var m in new[] { "if-cg", "if-lissa", "if-arnoldi", "ekfac", "identity" })
            if (!(arch == "smallcnn" && m == "if-cg")) yield return ("full", m);
    }

    public static string CaseName(string arch, string set, string method) => $"hvp-{arch}-{set}:{method}";

    /// <summary>The group, in the order it must run (setup, then if-explicit before the others of its model).</summary>
    public static List<string> Group() =>
        new[] { "hvp-setup" }.Concat(Archs.SelectMany(a => Plan(a).Select(p => CaseName(a, p.Set, p.Method)))).ToList();

    public static void Register(Dictionary<string, Func<BenchContext, IEnumerable<BenchResult>>> cases, HashSet<string> notInAll)
    {
        cases["hvp-setup"] = Setup;
        notInAll.Add("hvp-setup");
        foreach (var a in Archs)
            foreach (var (set, method) in Plan(a))
            {
                string name = CaseName(a, set, method);
                cases[name] = c => Cost(c, a, set, method);
                notInAll.Add(name);
            }
    }

    static IEnumerable<BenchResult> Setup(BenchContext c)
    {
        var (train, _, src) = c.Data(NTrain);
        foreach (var a in Archs)
        {
            double t = Measure.Seconds(() => TrainModel(train, a));
            yield return new BenchResult("hvp-setup", $"train {a}, 5 epochs", NTrain, t, 0, Measure.PeakRssMiB(), src);
        }
    }

    static void TrainModel(ImageDataset train, string arch)
    {
        var spec = ModelSpec.For(arch, 1, 28, 28, 10, arch == "mlp" ? new[] { 128 } : null);
        var r = new Trainer(new TrainOptions { Epochs = 5, Seed = 0, WeightDecay = L2 }).Train(spec, train, null, Path.Combine(Dir, arch), existing: ExistingRun.Overwrite);
        (r.Model as IDisposable)?.Dispose();
    }

    static nn.Module<Tensor, Tensor> LoadModel(ImageDataset train, string arch)
    {
        string run = Path.Combine(Dir, arch);
        if (!Directory.Exists(run) || Checkpoint.List(run).Count == 0) TrainModel(train, arch);
        var m = Checkpoint.List(run)[^1].LoadModel();
        m.eval();
        return m;
    }

    static IEnumerable<BenchResult> Cost(BenchContext c, string arch, string set, string method)
    {
        var log = Console.Error;
        var (train, test, src) = c.Data(NTrain);
        var queries = test.Subset(Enumerable.Range(0, NQueries).ToArray());
        var model = LoadModel(train, arch);
        var task = new ClassificationTask();
        string? layers = set == "fc2" ? "fc2" : null;
        string name = $"hvp-{arch}-{set}";
        var prof = new Profiler();
        double rssBefore = Measure.RssMiB();

        var sw = System.Diagnostics.Stopwatch.StartNew();
        (Tensor Scores, string? FitStage, string Note, long NumParams) run;
        try { run = Run(model, task, train, queries, arch, set, method, layers, prof); }
        catch (InfluenceSharpException e)
        {
            // A refused setting (e.g. LiSSA's divergence check) is a result too; the other cases still run.
            log.WriteLine($"{name} {method}: failed: {e.Message}");
            run = (torch.zeros(0), null, "failed: " + e.Message, 0);
        }
        var (scores, fitStage, note, nParams) = run;
        if (nParams == 0)
        {
            yield return new BenchResult(name, $"{method}: failed", 0, sw.Elapsed.TotalSeconds, 0, Measure.PeakRssMiB(), note);
            yield break;
        }
        double total = sw.Elapsed.TotalSeconds;
        double peak = Measure.PeakRssMiB();

        // Accuracy: Spearman of all 100 × 5,000 pairwise scores with if-explicit's (same model, same layers).
        string explicitPath = Path.Combine(Dir, $"{arch}-{set}-if-explicit.f64");
        string rho = "";
        if (method == "if-explicit")
        {
            Directory.CreateDirectory(Dir);
            File.WriteAllBytes(explicitPath, System.Runtime.InteropServices.MemoryMarshal.AsBytes(scores.data<double>().ToArray().AsSpan()).ToArray());
            rho = "Spearman 1 (reference)";
        }
        else if (set == "fc2" && File.Exists(explicitPath))
        {
            var reference = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, double>(File.ReadAllBytes(explicitPath)).ToArray();
            rho = $"Spearman to if-explicit {Ranking.Spearman(scores.flatten().data<double>().ToArray(), reference):F3}";
        }
        else if (set == "fc2") rho = "Spearman: no if-explicit scores (run its case first)";
        else rho = "no if-explicit on the full model";

        var stages = prof.Stages.ToDictionary(s => s.Name, s => s.Total);
        double fit = fitStage is null ? 0 : stages.GetValueOrDefault(fitStage);
        double pre = stages.GetValueOrDefault("Precondition Queries");
        double score = stages.GetValueOrDefault("Compute Pairwise Score");
        // The HVP methods fit inside their query preconditioning (on first use); EK-FAC and identity before it.
        double preOnly = method.StartsWith("if-", StringComparison.Ordinal) ? pre - fit : pre;
        string label = $"{method} ({nParams:N0} params)";
        string common = $"{src}; {NTrain} train x {NQueries} queries; RSS before {rssBefore:F0} MiB";
        log.WriteLine($"{name} {label}: fit {fit:F1} s, precondition {preOnly:F1} s, score {score:F1} s, total {total:F1} s, peak RSS {peak:F0} MiB (before {rssBefore:F0}); {rho}; {note}");
        if (fitStage is not null) yield return new BenchResult(name, $"{method}: fit ({fitStage})", NTrain, fit, 0, peak, common);
        yield return new BenchResult(name, $"{method}: precondition {NQueries} queries", NQueries, preOnly, 0, peak, note);
        yield return new BenchResult(name, $"{method}: score", NTrain, score, 0, peak, "");
        yield return new BenchResult(name, $"{label}: total", NTrain, total, 0, peak, $"{rho}; {common}");
    }

    static (Tensor Scores, string? FitStage, string Note, long NumParams) Run(nn.Module<Tensor, Tensor> model, ClassificationTask task,
        ImageDataset train, IDataset queries, string arch, string set, string method, string? layers, Profiler prof)
    {
        bool full = set == "full";
        if (method is "ekfac" or "identity")
        {
            var strategy = method == "ekfac" ? FactorStrategy.Ekfac : FactorStrategy.Identity;
            Factors? factors = null;
            prof.Time("Fit Factors", () => factors = new FactorFitter(model, task, new FactorOptions { Strategy = strategy, TrainBatchSize = 500, PartitionSize = NTrain, Layers = layers }).Fit(train));
            var f = new InfluenceFunction(model, task, factors!, new ScoreOptions { Damping = method == "ekfac" ? Damping : 0, TrainBatchSize = 500 }, prof);
            var s = f.PairwiseMatrix(queries, train).to(ScalarType.Float64);
            return (s, "Fit Factors", method == "ekfac" ? $"damping {Damping:G2} (no L2 term)" : "gradient dot product", f.Layers.Sum(l => l.NumParams));
        }
        var o = new HvpSolverOptions
        {
            Damping = Damping, L2 = L2, Hessian = HessianKind.GaussNewton, Layers = layers,
            TrainBatchSize = 500, QueryBatchSize = NQueries,
        };
        var (solver, opts, fitStage) = method switch
        {
            "if-explicit" => (HvpSolver.Explicit, o, "Explicit Hessian"),
            "if-cg" => (HvpSolver.Cg, o with { CgTolerance = 1e-3, CgMaxIterations = full ? CgFullIterations(arch) : 30 }, (string?)null),
            "if-lissa" => (HvpSolver.Lissa, o with { LissaDepth = full ? LissaFullDepth(arch) : 200, LissaScale = LissaScale(set), LissaBatchSize = full ? 100 : 500 }, null),
            "if-arnoldi" => (HvpSolver.Arnoldi, o with { ArnoldiIterations = full ? ArnoldiFullIterations(arch) : 100, ArnoldiTopK = full ? ArnoldiFullIterations(arch) / 2 : 50 }, "Arnoldi"),
            _ => throw new ArgumentException(method),
        };
        var h = new HvpInfluence(model, task, train, solver, opts, prof);
        var scores = h.PairwiseMatrix(queries, train).to(ScalarType.Float64);
        string note = solver switch
        {
            HvpSolver.Cg => $"CG tol {opts.CgTolerance:G2}, {h.LastCgReport!.Iterations} of <= {opts.CgMaxIterations} it, max residual {h.LastCgReport.MaxResidual:G2}",
            HvpSolver.Lissa => $"LiSSA depth {opts.LissaDepth}, scale {opts.LissaScale:G3}, batch {opts.LissaBatchSize}",
            HvpSolver.Arnoldi => $"Arnoldi {opts.ArnoldiIterations} it, top {opts.ArnoldiTopK}, eigenvalues {Range(h.ArnoldiEigenvalues())}",
            _ => "Gauss-Newton, eigendecomposed",
        };
        note += $"; {h.Curvature.ExampleVectorProducts / 1e6:G4} M example-vector products";
        note += $"; Gauss-Newton + L2 {L2:G2}, damping {Damping:G2}";
        return (scores, fitStage, note, h.Curvature.NumParams);
    }

    static string Range(double[] v) => v.Length == 0 ? "none" : $"{v.Max():G3} .. {v.Min():G3}";

    // Budgets for the full models (the GN product loops over vectors: one double backward per vector).
    static int Env(string key, int fallback) => int.TryParse(Environment.GetEnvironmentVariable(key), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : fallback;
    static int CgFullIterations(string arch) => Env("HVP_CG_IT_" + arch.ToUpperInvariant(), 5);
    static int LissaFullDepth(string arch) => Env("HVP_LISSA_DEPTH_" + arch.ToUpperInvariant(), arch == "mlp" ? 20 : 3);
    static int ArnoldiFullIterations(string arch) => Env("HVP_ARNOLDI_IT_" + arch.ToUpperInvariant(), arch == "mlp" ? 20 : 6);
    // Above the largest eigenvalue of the damped curvature (Arnoldi: about 3.6 for the Mlp's fc2, 15 for the full Mlp, 11+ for the full SmallCnn).
    static double LissaScale(string set) => set == "fc2" ? 10 : 50;
}
