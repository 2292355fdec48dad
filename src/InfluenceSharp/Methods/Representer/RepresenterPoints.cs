using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods.LastLayer;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.Representer;

/// <summary>Settings of <see cref="RepresenterPoints"/>.</summary>
public sealed record RepresenterOptions
{
    /// <summary>λ of the L2 term λ‖Θ‖² of the last-layer fit (dattri's default 0.003).</summary>
    public double L2 { get; init; } = 0.003;
    /// <summary>The fit stops when max |∇| of the objective ≤ this.</summary>
    public double Tolerance { get; init; } = 1e-10;
    public int MaxIterations { get; init; } = 5000;
    /// <summary>The Linear layer whose input is the feature space; null = the model's last Linear layer.</summary>
    public string? Layer { get; init; }
    /// <summary>Training examples per attribution batch (the command line's --batch-size).</summary>
    public int TrainBatchSize { get; init; } = 256;
    public IProgress<ProgressUpdate>? Progress { get; init; }
}

/// <summary>
/// Representer point selection (Yeh et al. 2018; RPS-L2 as dattri implements it). The last Linear
/// layer is refit without bias on the penultimate features f_i to a stationary point Θ* of
/// (1/n) Σ_i CE(Θ f_i, p_i) + λ‖Θ‖², p_i = the model's predicted probabilities; then the representer
/// theorem gives Θ* = Σ_i α_i f_iᵀ with α_i = −(softmax(Θ* f_i) − p_i)/(2λn), so that the refit
/// layer's logits of any x_t decompose exactly as Θ* f_t = Σ_i α_i (f_i · f_t). The score of training
/// example i for query t is its term for the query's label: α_{i,y_t} (f_i · f_t) (positive = the
/// example pushes the query's logit up). Self-influence: the example's term for itself, α_{i,y_i}‖f_i‖².
/// </summary>
public sealed class RepresenterPoints : IAttributionMethod, IDisposable
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly TrackedLayer layer;
    private (IDataset Data, int Count, Tensor Features, Tensor Alpha, Tensor Theta)? fit;

    public RepresenterPoints(nn.Module<Tensor, Tensor> model, RepresenterOptions? options = null)
    {
        this.model = model;
        Options = options ?? new RepresenterOptions();
        if (!(Options.L2 > 0) || !double.IsFinite(Options.L2)) throw new InfluenceSharpException($"rps: L2 {Options.L2}: must be a positive finite number");
        layer = LastLayerFeatures.FinalLinear(model, Options.Layer);
    }

    public string Name => "rps";
    public RepresenterOptions Options { get; }
    /// <summary>max |∇| of the fit's objective at the end (0 before a fit).</summary>
    public double FitGradient { get; private set; }

    /// <summary>The refit layer Θ* [K, d], the representer weights α [n, K] and the features [n, d] of the
    /// training set (float64; fitted once per training set).</summary>
    public (Tensor Theta, Tensor Alpha, Tensor Features) Fit(IDataset train)
    {
        if (fit is { } c && ReferenceEquals(c.Data, train) && c.Count == train.Count) return (c.Theta, c.Alpha, c.Features);
        if (fit is { } old) { old.Features.Dispose(); old.Alpha.Dispose(); old.Theta.Dispose(); }
        var (f, logits) = LastLayerFeatures.Compute(model, layer, train, Options.TrainBatchSize, Name);
        Tensor theta, alpha;
        using (var scope = NewDisposeScope())
        {
            var p = nn.functional.softmax(logits, 1);
            Tensor init;
            using (torch.no_grad()) init = ((Tensor)layer.Module.parameters().First()).detach().to(ScalarType.Float64).cpu().clone();
            theta = FitTheta(f, p, init, Options.L2, Options.Tolerance, Options.MaxIterations, out double gmax).DetachFromDisposeScope();
            FitGradient = gmax;
            int n = train.Count;
            using var coef = (-1.0 / (2 * Options.L2 * n)).ToScalar();
            alpha = (nn.functional.softmax(f.matmul(theta.mT), 1) - p).mul_(coef).DetachFromDisposeScope();
        }
        logits.Dispose();
        fit = (train, train.Count, f, alpha, theta);
        return (theta, alpha, f);
    }

    /// <summary>Full-batch L-BFGS (Armijo backtracking) on (1/n) Σ CE(Θ f_i, p_i) + λ‖Θ‖² from Θ₀.</summary>
    internal static Tensor FitTheta(Tensor f, Tensor p, Tensor theta0, double l2, double tol, int maxIterations, out double gmax)
    {
        long n = f.shape[0];
        (double F, Tensor G) Objective(Tensor th)
        {
            var z = f.matmul(th.mT);
            var lse = z.logsumexp(1);
            double val = ((lse - (p * z).sum(new long[] { 1 })).sum().item<double>()) / n + l2 * th.square().sum().item<double>();
            var grad = (nn.functional.softmax(z, 1) - p).mT.matmul(f) / n + 2 * l2 * th;
            return (val, grad);
        }
        // x, g and the curvature pairs outlive an iteration (held outside every dispose scope and
        // disposed when replaced); each iteration's temporaries go with its scope: without it a fit of
        // thousands of iterations kept them all alive (gigabytes on a 5,000-example logistic regression).
        var x = theta0.clone().DetachFromDisposeScope();
        var (fx, g) = Objective(x);
        g = g.DetachFromDisposeScope();
        var ss = new List<Tensor>(); var ys = new List<Tensor>();
        gmax = g.abs().max().item<double>();
        for (int it = 0; it < maxIterations && gmax > tol; it++)
        {
            using var scope = NewDisposeScope();
            var q = g.clone();
            var alphas = new double[ss.Count];
            for (int i = ss.Count - 1; i >= 0; i--)
            {
                alphas[i] = (ss[i] * q).sum().item<double>() / (ys[i] * ss[i]).sum().item<double>();
                q = q - ys[i] * alphas[i];
            }
            if (ss.Count > 0) q = q * ((ss[^1] * ys[^1]).sum().item<double>() / (ys[^1] * ys[^1]).sum().item<double>());
            for (int i = 0; i < ss.Count; i++)
            {
                double beta = (ys[i] * q).sum().item<double>() / (ys[i] * ss[i]).sum().item<double>();
                q = q + ss[i] * (alphas[i] - beta);
            }
            var d = -q;
            double slope = (g * d).sum().item<double>();
            if (!(slope < 0)) { d = -g; slope = -(g * g).sum().item<double>(); foreach (var t in ss.Concat(ys)) t.Dispose(); ss.Clear(); ys.Clear(); }
            double step = ss.Count == 0 ? Math.Min(1.0, 1.0 / Math.Max(g.abs().sum().item<double>(), 1e-300)) : 1.0;
            Tensor xn; double fn; Tensor gn;
            while (true)
            {
                xn = x + d * step;
                (fn, gn) = Objective(xn);
                if (fn <= fx + 1e-4 * step * slope || step < 1e-20) break;
                step *= 0.5;
            }
            var s = xn - x; var y = gn - g;
            if ((s * y).sum().item<double>() > 1e-300)
            {
                ss.Add(s.DetachFromDisposeScope()); ys.Add(y.DetachFromDisposeScope());
                if (ss.Count > 20) { ss[0].Dispose(); ys[0].Dispose(); ss.RemoveAt(0); ys.RemoveAt(0); }
            }
            x.Dispose(); g.Dispose();
            x = xn.DetachFromDisposeScope(); fx = fn; g = gn.DetachFromDisposeScope();
            gmax = g.abs().max().item<double>();
            if (step < 1e-20) break;
        }
        foreach (var t in ss.Concat(ys)) t.Dispose();
        g.Dispose();
        return x;
    }

    public void Pairwise(IDataset queries, IDataset train, Action<int, Tensor> sink)
    {
        var (_, alpha, f) = Fit(train);
        var (qf, ql) = LastLayerFeatures.Compute(model, layer, queries, Options.TrainBatchSize, Name);
        ql.Dispose();
        using var y = torch.tensor(LastLayerFeatures.Labels(queries));
        int n = train.Count;
        for (int off = 0; off < n; off += Options.TrainBatchSize)
        {
            using var scope = NewDisposeScope();
            int b = Math.Min(Options.TrainBatchSize, n - off);
            var dots = qf.matmul(f.narrow(0, off, b).mT);                    // [q, b]
            var a = alpha.narrow(0, off, b).index_select(1, y).mT;            // [q, b]: α_{i, y_t}
            sink(off, (dots * a).to(ScalarType.Float32));
        }
        qf.Dispose();
    }

    public double[] SelfInfluence(IDataset train)
    {
        var (_, alpha, f) = Fit(train);
        using var scope = NewDisposeScope();
        var y = torch.tensor(LastLayerFeatures.Labels(train)).unsqueeze(1);
        var a = alpha.gather(1, y).squeeze(1);
        return (a * f.square().sum(new long[] { 1 })).data<double>().ToArray();
    }

    public void Dispose()
    {
        if (fit is { } c) { c.Features.Dispose(); c.Alpha.Dispose(); c.Theta.Dispose(); }
    }
}
