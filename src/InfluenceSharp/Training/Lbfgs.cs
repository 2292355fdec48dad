using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>How a full-batch L-BFGS fit ended.</summary>
public sealed record LbfgsResult(int Iterations, double MaxGradient, double Objective);

/// <summary>Full-batch L-BFGS (two-loop recursion, Armijo backtracking, history 20) in float64 on
/// f(θ) = mean cross-entropy over the training set + (L2/2)‖θ‖² over the trainable parameters,
/// until max |∇f| ≤ tolerance. The model is optimised in float64 and returned in its own dtype (in
/// eval mode). Deterministic: no sampling.</summary>
public static class Lbfgs
{
    public const int MaxIterations = 20000;
    const int History = 20;

    public static LbfgsResult Fit(nn.Module<Tensor, Tensor> model, LabeledDataset train, double l2, double tolerance, int batchSize = 4096,
        ProgressReporter? progress = null)
    {
        var dtype = model.parameters().First().dtype;
        model.to(ScalarType.Float64);
        model.eval();
        var ps = model.parameters().Where(p => p.requires_grad).ToList();
        int n = train.Count;
        var all = Enumerable.Range(0, n).ToArray();
        var chunks = new List<(Tensor X, Tensor Y)>();
        for (int b = 0; b < n; b += Math.Max(batchSize, 1024))
        {
            var idx = all.AsSpan(b, Math.Min(Math.Max(batchSize, 1024), n - b));
            chunks.Add((train.Inputs(idx).to(ScalarType.Float64).DetachFromDisposeScope(), train.Targets(idx).DetachFromDisposeScope()));
        }
        LbfgsResult result;
        try
        {
            using var outer = NewDisposeScope();
            (double F, Tensor G) Objective(Tensor theta)
            {
                using (no_grad()) Unflatten(ps, theta);
                foreach (var p in ps) p.grad?.zero_();
                double f = 0;
                foreach (var (x, y) in chunks)
                {
                    using var scope = NewDisposeScope();
                    var loss = nn.functional.cross_entropy(model.forward(x), y, reduction: nn.Reduction.Sum) / n;
                    loss.backward();
                    f += loss.item<double>();
                }
                using (no_grad())
                {
                    var g = torch.cat(ps.Select(p => (p.grad ?? torch.zeros_like(p)).flatten()).ToArray()) + l2 * theta;
                    f += 0.5 * l2 * theta.square().sum().item<double>();
                    return (f, g);
                }
            }
            Tensor w;
            using (no_grad()) w = torch.cat(ps.Select(p => p.detach().flatten()).ToArray()).clone();
            var (fw, g) = Objective(w);
            var ss = new List<Tensor>(); var ys = new List<Tensor>();
            int it = 0;
            double gmax = g.abs().max().item<double>();
            while (it < MaxIterations && gmax > tolerance)
            {
                it++;
                using var scope = NewDisposeScope();
                Tensor d; double slope;
                using (no_grad())
                {
                    var q = g.clone();
                    var alphas = new double[ss.Count];
                    for (int i = ss.Count - 1; i >= 0; i--)
                    {
                        double rho = 1 / ys[i].dot(ss[i]).item<double>();
                        alphas[i] = rho * ss[i].dot(q).item<double>();
                        q.sub_(ys[i] * alphas[i]);
                    }
                    if (ss.Count > 0) q.mul_(ss[^1].dot(ys[^1]).item<double>() / ys[^1].dot(ys[^1]).item<double>());
                    for (int i = 0; i < ss.Count; i++)
                    {
                        double rho = 1 / ys[i].dot(ss[i]).item<double>();
                        double beta = rho * ys[i].dot(q).item<double>();
                        q.add_(ss[i] * (alphas[i] - beta));
                    }
                    d = -q;
                    slope = g.dot(d).item<double>();
                    if (slope >= 0) { d = -g; slope = -g.dot(g).item<double>(); foreach (var t in ss.Concat(ys)) t.Dispose(); ss.Clear(); ys.Clear(); }
                }
                double step = ss.Count == 0 ? Math.Min(1, 1 / Math.Sqrt(-slope)) : 1;
                Tensor wn, gn; double fn;
                while (true)
                {
                    using (no_grad()) wn = w + step * d;
                    (fn, gn) = Objective(wn);
                    if (fn <= fw + 1e-4 * step * slope || step < 1e-12) break;
                    step *= 0.5;
                }
                using (no_grad())
                {
                    var s = wn - w; var yv = gn - g;
                    if (s.dot(yv).item<double>() > 1e-12)
                    {
                        ss.Add(s.DetachFromDisposeScope()); ys.Add(yv.DetachFromDisposeScope());
                        if (ss.Count > History) { ss[0].Dispose(); ys[0].Dispose(); ss.RemoveAt(0); ys.RemoveAt(0); }
                    }
                }
                w.Dispose(); g.Dispose();
                w = wn.DetachFromDisposeScope(); fw = fn; g = gn.DetachFromDisposeScope();
                gmax = g.abs().max().item<double>();
                if (it % 20 == 0) progress?.Update(0, $"L-BFGS iteration {it}, objective {fw:G8}, max |grad| {gmax:G2}");
                if (step < 1e-12) break;    // no decrease possible at this precision
            }
            using (no_grad()) Unflatten(ps, w);
            foreach (var t in ss.Concat(ys)) t.Dispose();
            w.Dispose(); g.Dispose();
            result = new LbfgsResult(it, gmax, fw);
        }
        finally
        {
            foreach (var (x, y) in chunks) { x.Dispose(); y.Dispose(); }
            foreach (var p in ps) p.grad?.zero_();
            model.to(dtype);
            model.eval();
        }
        return result;
    }

    static void Unflatten(List<TorchSharp.Modules.Parameter> ps, Tensor theta)
    {
        long o = 0;
        foreach (var p in ps)
        {
            p.copy_(theta.narrow(0, o, p.numel()).view_as(p));
            o += p.numel();
        }
    }
}
