using InfluenceSharp.Data;
using InfluenceSharp.Gradients;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.DataInf;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.RelatIF;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Methods;

/// <summary>DataInf and RelatIF against their explicit formulas on a tiny float64 network.</summary>
public class DataInfTests
{


    [Fact]
    public void ScoresEqualTheExplicitPerLayerInverse()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For(), n: 10, queries: 3);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var layers = TrackedLayer.Find(model);
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
        int n = train.Count;
        var scores = torch.zeros(queries.Count, n, dtype: ScalarType.Float64);
        var self = torch.zeros(n, dtype: ScalarType.Float64);
        long off = 0;
        var lambdas = new List<double>();
        foreach (var l in layers)
        {
            var g = gz.narrow(1, off, l.NumParams); var q = gq.narrow(1, off, l.NumParams);
            double lam = 0.1 * g.square().sum().item<double>() / (n * l.NumParams);
            lambdas.Add(lam);
            var inv = torch.zeros(l.NumParams, l.NumParams, dtype: ScalarType.Float64);
            for (int i = 0; i < n; i++)
                inv += torch.eye(l.NumParams, dtype: ScalarType.Float64) - g[i].outer(g[i]) / (lam + g[i].square().sum());
            inv /= n * lam;
            // The closed form is the mean of the rank-one damped inverses (Sherman–Morrison).
            var direct = torch.zeros_like(inv);
            for (int i = 0; i < n; i++) direct += torch.linalg.inv(g[i].outer(g[i]) + lam * torch.eye(l.NumParams, dtype: ScalarType.Float64));
            Assert.True(Oracles.RelErr(inv, direct / n) < 1e-8);
            scores += q.matmul(inv).matmul(g.mT);
            self += (g.matmul(inv) * g).sum(1);
            off += l.NumParams;
        }
        var m = new DataInf(model, task, new DataInfOptions { TrainBatchSize = 4, QueryBatchSize = 2 });
        var lam2 = m.Lambdas(train);
        for (int i = 0; i < lambdas.Count; i++) Assert.Equal(lambdas[i], lam2[i], 12);
        double err = Oracles.RelErr(m.PairwiseMatrix(queries, train), scores);
        Assert.True(err < 1e-6, $"datainf vs explicit per-layer inverse: relative error {err:G3}");
        double selfErr = Oracles.RelErr(torch.tensor(m.SelfInfluence(train)), self);
        Assert.True(selfErr < 1e-10, $"self-influence: relative error {selfErr:G3}");
    }

    [Fact]
    public void RelatIFDividesByTheSquareRootOfTheSelfInfluenceTerm()
    {
        var (model, train, queries) = Oracles.TinyMlpProblem(TestSeed.For(), n: 10, queries: 3);
        var task = new ClassificationTask(QueryMeasurement.Margin);
        var layers = TrackedLayer.Find(model);
        var gz = Oracles.PerExampleGradients(model, layers, train, task.TrainLoss);
        var gq = Oracles.PerExampleGradients(model, layers, queries, task.QueryMeasure);
        const double damping = 0.5;
        var baseMethod = new HvpInfluence(model, task, train, HvpSolver.Explicit, new HvpSolverOptions { Damping = damping, Hessian = HessianKind.GaussNewton, TrainBatchSize = 4 });
        var c = baseMethod.CurvatureMatrix();
        var inv = torch.linalg.inv(c + damping * torch.eye(c.shape[0], dtype: ScalarType.Float64));
        var selfTerm = (gz.matmul(inv) * gz).sum(1);
        var expected = gq.matmul(inv).matmul(gz.mT) / selfTerm.sqrt().unsqueeze(0);
        var m = new RelatIF(baseMethod);
        double err = Oracles.RelErr(m.PairwiseMatrix(queries, train), expected);
        Assert.True(err < 1e-6, $"relatif: relative error {err:G3}");
        Assert.True(Oracles.RelErr(torch.tensor(m.SelfInfluence(train)), selfTerm.sqrt()) < 1e-10);
        // Not the plain influence: the division changes each training example's scale.
        Assert.True(Oracles.RelErr(baseMethod.PairwiseMatrix(queries, train), expected) > 1e-2);
    }
}
