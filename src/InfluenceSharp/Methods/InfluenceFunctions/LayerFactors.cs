using InfluenceSharp.Gradients;
using static TorchSharp.torch;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>
/// The fitted curvature of one tracked layer in a uniform form: optional eigenbases Q_A [In, In] and
/// Q_S [Out, Out] and eigenvalues Λ [Out, In] in that basis, so that every strategy preconditions with
/// Q_S [(Q_Sᵀ G Q_A) ⊘ (Λ + λ)] Q_Aᵀ. Identity: no basis, Λ = 1, λ ignored. Diagonal: no basis,
/// Λ = E[G⊙G]. K-FAC: Λ = λ_S λ_Aᵀ. EK-FAC: Λ refit as E[(Q_Sᵀ G Q_A)²].
/// </summary>
public sealed class LayerFactors : IDisposable
{
    public LayerFactors(string name, FactorStrategy strategy, Tensor? qa, Tensor? qs, Tensor? eigA, Tensor? eigS, Tensor? lambda)
    {
        Name = name; Strategy = strategy; QA = qa; QS = qs; EigA = eigA; EigS = eigS; Lambda = lambda;
    }

    public string Name { get; }
    public FactorStrategy Strategy { get; }
    public Tensor? QA { get; }
    public Tensor? QS { get; }
    public Tensor? EigA { get; }
    public Tensor? EigS { get; }
    /// <summary>Diagonal: E[G⊙G]; EK-FAC: refit eigenvalues. Null for identity and K-FAC.</summary>
    public Tensor? Lambda { get; }

    /// <summary>The eigenvalues Λ [Out, In] in the layer's basis (a new tensor the caller disposes; null for identity).</summary>
    public Tensor? Eigenvalues() => Strategy switch
    {
        FactorStrategy.Identity => null,
        FactorStrategy.Kfac => torch.outer(EigS!, EigA!),
        _ => Lambda!.alias(),
    };

    /// <summary>The damping the heuristic picks: 0.1 × mean eigenvalue (0 for identity).</summary>
    public double HeuristicDamping()
    {
        using var e = Eigenvalues();
        return e is null ? 0 : 0.1 * e.mean().item<double>();
    }

    /// <summary>Prepared for scoring in a given dtype/device: 1/(Λ+λ) and the bases.</summary>
    public Preconditioner Prepare(double? damping, ScalarType dtype, Device device)
    {
        double lam = damping ?? HeuristicDamping();
        Tensor? w = null;
        if (Strategy != FactorStrategy.Identity)
        {
            using var e = Eigenvalues()!;
            var denom = e.clamp_min(0) + lam;
            if (denom.le(0).any().item<bool>())
                throw new InfluenceSharpException($"layer '{Name}': damping {lam} leaves a zero eigenvalue; pass a positive --damping");
            w = denom.reciprocal().to(dtype, device);
        }
        return new Preconditioner(Name, QA?.to(dtype, device), QS?.to(dtype, device), w, lam);
    }

    public Dictionary<string, Tensor> ToTensors()
    {
        var d = new Dictionary<string, Tensor>();
        if (QA is not null) d[$"{Name}.qa"] = QA;
        if (QS is not null) d[$"{Name}.qs"] = QS;
        if (EigA is not null) d[$"{Name}.eig_a"] = EigA;
        if (EigS is not null) d[$"{Name}.eig_s"] = EigS;
        if (Lambda is not null) d[$"{Name}.lambda"] = Lambda;
        return d;
    }

    public void Dispose()
    {
        QA?.Dispose(); QS?.Dispose(); EigA?.Dispose(); EigS?.Dispose(); Lambda?.Dispose();
    }
}

/// <summary>A layer's factors ready for scoring: bases and W = 1/(Λ+λ) in the compute dtype.</summary>
public sealed class Preconditioner : IDisposable
{
    public Preconditioner(string name, Tensor? qa, Tensor? qs, Tensor? w, double damping)
    {
        Name = name; QA = qa; QS = qs; W = w; Damping = damping;
    }

    public string Name { get; }
    public Tensor? QA { get; }
    public Tensor? QS { get; }
    /// <summary>1/(Λ+λ) [Out, In]; null for identity.</summary>
    public Tensor? W { get; }
    public double Damping { get; }

    /// <summary>H⁻¹G for per-example gradients G [B, Out, In].</summary>
    public Tensor Apply(Tensor g)
    {
        if (W is null) return g;
        if (QA is null) return g * W;
        var r = QS!.mT.matmul(g).matmul(QA) * W;
        return QS.matmul(r).matmul(QA.mT);
    }

    /// <summary>(Q_Sᵀ G Q_A) ⊙ W for per-example gradients [B, Out, In]: H⁻¹G kept in the eigenbasis
    /// (without the rotation back). Rank-one layers rotate g and a, never the Out×In matrix.</summary>
    public Tensor ApplyInBasis(LayerBatch lb)
    {
        if (QA is null) return Apply(lb.PerExample());
        var r = lb.RankOne && !lb.IsOneHot ? lb.G.squeeze(1).matmul(QS!).unsqueeze(2) * lb.A.squeeze(1).matmul(QA).unsqueeze(1) : lb.Rotated(QA, QS);
        return W is null ? r : r.mul_(W);
    }

    /// <summary>Self-influence Σ ‖(Q_Sᵀ G Q_A) ⊘ √(Λ+λ)‖² per example [B], using the rank-one
    /// structure of Linear layers (no Out×In matrix per example).</summary>
    public Tensor SelfScores(LayerBatch lb, long memoryBytes = LayerBatch.DefaultMemoryBytes)
    {
        if (lb.RankOne && !lb.IsOneHot)
        {
            var a = lb.A; var g = lb.G;
            if (QA is not null) { a = a.matmul(QA); g = g.matmul(QS!); }
            var a2 = a.squeeze(1).square(); var g2 = g.squeeze(1).square();
            return W is null ? g2.sum(1) * a2.sum(1) : (g2.matmul(W) * a2).sum(1);
        }
        var parts = new List<Tensor>();
        foreach (var c in lb.Chunks(memoryBytes))              // [b, Out, In] slices within the memory budget
        {
            // Each slice's [b, Out, In] temporaries are freed before the next slice is formed (else a
            // batch holds all of them until its scope ends, whatever the budget).
            using var scope = torch.NewDisposeScope();
            var r = c.Rotated(QA, QS).square();
            parts.Add((W is null ? r : r.mul_(W)).sum(new long[] { 1, 2 }).MoveToOuterDisposeScope());
        }
        return parts.Count == 1 ? parts[0] : torch.cat(parts, 0);
    }

    public void Dispose() { QA?.Dispose(); QS?.Dispose(); W?.Dispose(); }
}
