using System.Diagnostics;
using System.Globalization;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.Unrolled;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>
/// How linear is a training run in its example weights, and does unrolled attribution predict it?
/// Trains one run (in float32 or float64), takes unrolled's derivatives of the queries' margins, then
/// replays the run with random subsets removed (weights 0, same order) and compares the predicted
/// change −Σ_removed ∂margin/∂w_i with the actual one: same-order LDS (Spearman over subsets), Pearson
/// and the slope actual/predicted. The noise ceiling replays every subset a second time with one
/// kept example's weight moved by UL_EPS (1e-6 by default, an effect unrolled predicts to be
/// negligible): the Spearman correlation of the two replays says how much of the removal effect a
/// rounding-sized perturbation of the run reproduces. Settings from the environment: UL_N (training
/// images, 500), UL_MODEL (mlp), UL_EPOCHS (5), UL_BS (32), UL_LR (0.05), UL_MOM (0.9), UL_WD (5e-4),
/// UL_SCHED (constant|one-cycle), UL_DTYPE (32|64), UL_Q (queries, 20), UL_M (subsets, 20),
/// UL_ALPHA (0.95), UL_SCALE (how much of the removed
/// examples' weight is taken away: 1 removes them, 0.01 sets their weight to 0.99), UL_EPS (1e-6), UL_SINGLE (single-example removals to compare, 5).
/// </summary>
public static class UnrolledLinearityCases
{
    public static void Register(Dictionary<string, Func<BenchContext, IEnumerable<BenchResult>>> all, HashSet<string> notInAll)
    {
        all["unrolled-linearity"] = Linearity;
        notInAll.Add("unrolled-linearity");
    }

    static string Env(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : fallback;
    static double D(string name, double fallback) => double.Parse(Env(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
    static int I(string name, int fallback) => int.Parse(Env(name, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);

    static IEnumerable<BenchResult> Linearity(BenchContext c)
    {
        int n = I("UL_N", 500), nq = I("UL_Q", 20), m = I("UL_M", 20), singles = I("UL_SINGLE", 5);
        double alpha = D("UL_ALPHA", 0.95), eps = D("UL_EPS", 1e-6), scale = D("UL_SCALE", 1);
        var dtype = Env("UL_DTYPE", "32") == "64" ? ScalarType.Float64 : ScalarType.Float32;
        string arch = Env("UL_MODEL", "mlp");
        var o = new TrainOptions
        {
            Epochs = I("UL_EPOCHS", 5), BatchSize = I("UL_BS", 32), LearningRate = D("UL_LR", 0.05), Momentum = D("UL_MOM", 0.9),
            WeightDecay = D("UL_WD", 5e-4), Schedule = Env("UL_SCHED", "constant") == "one-cycle" ? LrSchedule.OneCycle : LrSchedule.Constant,
            DropLast = arch == "smallcnn",
        };
        var (all, test, source) = c.Data(Math.Max(n, 1));
        // A class-balanced-enough prefix: the first n images.
        var train = all.Subset(Enumerable.Range(0, n).ToArray(), "train");
        var queries = test.Subset(Enumerable.Range(0, nq).ToArray(), "queries");
        var spec = ModelSpec.For(arch.StartsWith("mlp-", StringComparison.Ordinal) ? "mlp" : arch, 1, 28, 28, 10);
        var plan = ReplayPlan.For(o, n);
        nn.Module<Tensor, Tensor> Initial()
        {
            torch.manual_seed(o.Seed);
            var model = arch.StartsWith("mlp-", StringComparison.Ordinal) ? new SmoothMlp(arch[4..]) : spec.Create();
            if (dtype != ScalarType.Float32) model.to(dtype);
            return model;
        }
        double[] Margins(nn.Module<Tensor, Tensor> model)
        {
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            model.eval();
            var idx = Enumerable.Range(0, nq).ToArray();
            var logits = model.forward(queries.Inputs(idx).to_type(dtype)).to_type(ScalarType.Float64);
            return ClassificationTask.Margins(logits, queries.Targets(idx)).data<double>().ToArray();
        }
        double[] Replay(double[]? w)
        {
            using var model = Initial();
            using var replay = new SgdReplay(model, train, plan, w);
            replay.RunTo(plan.Steps);
            return Margins(model);
        }

        if (Env("UL_PROBE", "") == "1")
        {
            // Query 0's margin after replays that differ from the run by almost nothing.
            var ones = Enumerable.Repeat(1.0, n).ToArray();
            Console.WriteLine($"probe: w null {Replay(null)[0]:R}; w all 1 {Replay(ones)[0]:R}");
            foreach (var (i, wi) in new[] { (3, 1 - 1e-6), (3, 1 + 1e-6), (3, 0.99), (7, 1 - 1e-6), (7, 0.99) })
            {
                var w = (double[])ones.Clone(); w[i] = wi;
                Console.WriteLine($"probe: w[{i}] = {wi:R}: {Replay(w)[0]:R}");
            }
            yield break;
        }
        if (Env("UL_PROBE", "") == "2")
        {
            // Where linearity breaks: (f(w_i = 1 − δ) − f(1)) / (−δ) against ∂f/∂w_i for growing δ (query 0,
            // the example with the largest derivative); run in float64 so that rounding does not blur small δ.
            var one = queries.Subset(new[] { 0 }, "query0");
            using var d0 = new UnrolledAttribution(Initial, train, plan, new ClassificationTask(QueryMeasurement.Margin)).Derivatives(one);
            var dd = d0.data<double>().ToArray();
            int i = Enumerable.Range(0, n).OrderByDescending(k => Math.Abs(dd[k])).First();
            double fBase = Replay(null)[0];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"probe: example {i}, d margin/d w = {-dd[i]:G6}"));
            foreach (double delta in new[] { 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1 })
            {
                var w = Enumerable.Repeat(1.0, n).ToArray(); w[i] = 1 - delta;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"probe: delta {delta:G2}: (f(1-delta) - f(1)) / -delta = {(Replay(w)[0] - fBase) / -delta:G6}"));
            }
            yield break;
        }
        var sw = Stopwatch.StartNew();
        var f0 = Replay(null);
        double trainSeconds = sw.Elapsed.TotalSeconds;
        var method = new UnrolledAttribution(Initial, train, plan, new ClassificationTask(QueryMeasurement.Margin), new UnrolledOptions { QueryBatch = nq });
        sw.Restart();
        // ∂(−margin)/∂w: the prediction of removing set R is Δmargin ≈ +Σ_R d.
        using var dt = method.Derivatives(queries);
        var d = dt.data<double>().ToArray();
        double reverseSeconds = sw.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{source}; {arch} {ParameterType(Initial)}, n {n}, {o.Epochs} epochs, batch {o.BatchSize}, lr {o.LearningRate}, momentum {o.Momentum}, wd {o.WeightDecay}, {o.Schedule}; {plan.Steps} steps; train {trainSeconds:F1} s, reverse {reverseSeconds:F1} s ({nq} queries)"));

        // Single-example removals: the examples with the largest |derivative| for query 0.
        var top = Enumerable.Range(0, n).OrderByDescending(i => Math.Abs(d[i])).Take(singles).ToArray();
        foreach (int i in top)
        {
            var w = Enumerable.Repeat(1.0, n).ToArray(); w[i] = 0;
            var f = Replay(w);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  remove {i}: query 0 predicted {d[i]:E3}, actual {f[0] - f0[0]:E3}"));
        }

        var masks = LdsSubsets.Masks(n, m, alpha, 0);
        var actual = new double[m, nq];
        var noisy = new double[m, nq];
        var predicted = new double[m, nq];
        var rng = new Random(12345);
        for (int j = 0; j < m; j++)
        {
            var w = masks[j].Select(b => b ? 1.0 : 1 - scale).ToArray();
            var f = Replay(w);
            var kept = LdsSubsets.Indices(masks[j]);
            var w2 = (double[])w.Clone();
            w2[kept[rng.Next(kept.Length)]] = 1 + eps;
            var f2 = Replay(w2);
            for (int q = 0; q < nq; q++)
            {
                double p = 0;
                for (int i = 0; i < n; i++) if (!masks[j][i]) p += scale * d[(long)q * n + i];
                predicted[j, q] = p; actual[j, q] = f[q] - f0[q]; noisy[j, q] = f2[q] - f0[q];
            }
        }
        double[] Col(double[,] a, int q) => Enumerable.Range(0, m).Select(j => a[j, q]).ToArray();
        var sp = new List<double>(); var pe = new List<double>(); var slope = new List<double>(); var ceil = new List<double>(); var noiseRatio = new List<double>();
        for (int q = 0; q < nq; q++)
        {
            var a = Col(actual, q); var p = Col(predicted, q); var z = Col(noisy, q);
            sp.Add(Ranking.Spearman(p, a)); pe.Add(Ranking.Pearson(p, a)); ceil.Add(Ranking.Spearman(a, z));
            double pm = p.Average(), am = a.Average();
            double cov = p.Zip(a, (x, y) => (x - pm) * (y - am)).Sum(), vp = p.Sum(x => (x - pm) * (x - pm));
            slope.Add(cov / vp);
            double sa = Math.Sqrt(a.Sum(x => (x - am) * (x - am)) / m);
            noiseRatio.Add(Math.Sqrt(a.Zip(z, (x, y) => (x - y) * (x - y)).Sum() / m) / sa);
        }
        string S(List<double> v) => string.Create(CultureInfo.InvariantCulture, $"{v.Where(double.IsFinite).DefaultIfEmpty(0).Average():F3} (median {Median(v):F3})");
        Console.WriteLine($"  alpha {alpha} (removed weight {1 - scale}), {m} subsets, {nq} queries: same-order LDS {S(sp)}, Pearson {S(pe)}, slope actual/predicted {S(slope)}");
        Console.WriteLine($"  noise (one kept weight 1+{eps}): Spearman of two replays {S(ceil)}, rms difference / sd of the removal effect {S(noiseRatio)}");
        double meanAbsEffect = Enumerable.Range(0, nq).Average(q => Col(actual, q).Select(Math.Abs).Average());
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  mean |actual change| {meanAbsEffect:E3}, mean |predicted change| {Enumerable.Range(0, nq).Average(q => Col(predicted, q).Select(Math.Abs).Average()):E3}"));
        yield return new BenchResult("unrolled-linearity", $"LDS {sp.Average():F3}, ceiling {ceil.Average():F3}", n, trainSeconds + reverseSeconds, 0, Measure.PeakRssMiB(), source);
    }

    static ScalarType ParameterType(Func<nn.Module<Tensor, Tensor>> build)
    {
        using var m = build();
        return m.parameters().First().dtype;
    }

    static double Median(List<double> v)
    {
        var s = v.Where(double.IsFinite).OrderBy(x => x).ToArray();
        return s.Length == 0 ? double.NaN : s[s.Length / 2];
    }
}

/// <summary>The Mlp (784-128-10) with another activation than ReLU (gelu, softplus, tanh): a training
/// map without ReLU's kinks.</summary>
public sealed class SmoothMlp : nn.Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Linear fc1, fc2;
    private readonly string activation;

    public SmoothMlp(string activation) : base(nameof(SmoothMlp))
    {
        this.activation = activation;
        fc1 = nn.Linear(784, 128);
        fc2 = nn.Linear(128, 10);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = fc1.call(x.flatten(1));
        h = activation switch
        {
            "gelu" => nn.functional.gelu(h),
            "softplus" => nn.functional.softplus(h),
            "tanh" => h.tanh(),
            _ => throw new ArgumentException($"activation {activation}"),
        };
        return fc2.call(h);
    }
}
