using InfluenceSharp.Data;
using InfluenceSharp.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

/// <summary>What one optimiser step reports: its batch's mean loss, correct predictions and size.</summary>
public readonly record struct StepOutcome(double Loss, long Correct, int Count);

/// <summary>
/// Takes the optimiser steps of a <see cref="ReplayPlan"/> on a model, with per-example weights w
/// (default 1): step t's loss is (1/b) Σ_{i∈B_t} w_i ℓ_i over its batch B_t of b examples (b stays
/// the batch's size, so w_i = 0 drops example i without moving any other example), and BatchNorm
/// layers in training mode use w-weighted batch statistics. A batch whose weights are all 1 takes
/// exactly the step of unweighted training, so a replay with w = 1 reproduces the run bit for bit.
/// The model may be in any floating dtype (inputs are converted to it).
/// </summary>
public sealed class SgdReplay : IDisposable
{
    private readonly nn.Module<Tensor, Tensor> model;
    private readonly LabeledDataset data;
    private readonly double[]? weights;
    private readonly Sgd optimizer;
    private readonly WeightedBatchNorm? batchNorm;
    private readonly FrozenPrefix? prefix;
    // The next step's inputs, read on a worker thread while this step computes: the plan fixes
    // every batch and augmentation draw in advance, so reading ahead changes no value.
    private (long Step, Task<Tensor> Inputs)? ahead;

    /// <param name="model">The model at the plan's step 0 (or at the step <see cref="Load"/> sets).</param>
    /// <param name="data">The training set the plan indexes.</param>
    /// <param name="plan">The steps to take.</param>
    /// <param name="exampleWeights">w per training example (null: all 1).</param>
    /// <param name="prefix">The model's frozen prefix's cached outputs for <paramref name="data"/>:
    /// each step runs only the rest of the model on them. Null: the whole model on the inputs.</param>
    public SgdReplay(nn.Module<Tensor, Tensor> model, LabeledDataset data, ReplayPlan plan, double[]? exampleWeights = null, FrozenPrefix? prefix = null)
    {
        if (data.Count != plan.TrainCount) throw new InfluenceSharpException($"replay: the plan is for {plan.TrainCount} training examples, the data has {data.Count}");
        if (exampleWeights is not null && exampleWeights.Length != data.Count)
            throw new InfluenceSharpException($"example weights: {exampleWeights.Length} weights for {data.Count} training examples");
        if (exampleWeights?.Any(w => !double.IsFinite(w)) == true) throw new InfluenceSharpException("example weights: not all finite");
        if (prefix is not null && plan.Options.Augment) throw new InfluenceSharpException("--cache-frozen-prefix: not with --augment");
        if (prefix is not null && !prefix.Covers(data)) throw new InfluenceSharpException($"--cache-frozen-prefix: the training data ({data.Name}) are not images of the cache's store");
        this.model = model; this.data = data; Plan = plan; weights = exampleWeights; this.prefix = prefix;
        Trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (Trainable.Count == 0) throw new InfluenceSharpException("replay: the model has no trainable parameter");
        Dtype = Trainable[0].parameter.dtype;
        if (prefix is not null && Dtype != ScalarType.Float32) throw new InfluenceSharpException($"--cache-frozen-prefix: the model is {Dtype}; the cache is float32");
        optimizer = new Sgd(Trainable.Select(p => p.parameter), plan.Momentum, plan.WeightDecay);
        batchNorm = exampleWeights is null ? null : WeightedBatchNorm.Attach(model);
    }

    public ReplayPlan Plan { get; }

    /// <summary>The next step to take (0 before the first).</summary>
    public long Step { get; private set; }

    /// <summary>The parameters the optimiser updates, by name.</summary>
    public IReadOnlyList<(string name, TorchSharp.Modules.Parameter parameter)> Trainable { get; }

    public ScalarType Dtype { get; }

    internal Sgd Optimizer => optimizer;

    /// <summary>Takes step <see cref="Step"/>.</summary>
    public StepOutcome Next()
    {
        long t = Step;
        if (t >= Plan.Steps) throw new InvalidOperationException($"replay: all {Plan.Steps} steps taken");
        using var scope = NewDisposeScope();
        model.train();
        InitWeights.FrozenBatchNormToEval(model);
        var idx = Plan.Batch(t);
        using var x = InputsOf(t);
        ReadAhead(t + 1);
        var y = data.Targets(idx);
        optimizer.ZeroGrad();
        Tensor logits, loss;
        var w = BatchWeights(idx);
        if (w is null)
        {
            logits = Forward(x);
            loss = GptObjective.MeanLoss(logits, y);
        }
        else
        {
            var wt = torch.tensor(w).to_type(Dtype);
            if (batchNorm is not null) batchNorm.Weights = wt;
            try { logits = Forward(x); }
            finally { if (batchNorm is not null) batchNorm.Weights = null; }
            loss = GptObjective.WeightedLoss(logits, y, wt);
        }
        loss.backward();
        optimizer.Step(Plan.LearningRate(t));
        Step = t + 1;
        double l = loss.to_type(ScalarType.Float64).item<double>();
        if (double.IsNaN(l) || double.IsInfinity(l))
            throw new InfluenceSharpException($"training diverged: loss is {l} at epoch {Plan.EpochOf(t)}, step {t + 1} (lower --lr?)");
        long correct = GptObjective.Correct(logits, y);
        return new StepOutcome(l, correct, idx.Length);
    }

    Tensor Forward(Tensor x) => prefix is null ? model.forward(x) : prefix.Suffix(x);

    /// <summary>Step t's inputs (the caller disposes them): the read started ahead, else read now.</summary>
    Tensor InputsOf(long t)
    {
        if (ahead is { } a && a.Step == t)
        {
            ahead = null;
            return a.Inputs.GetAwaiter().GetResult();   // a read error surfaces here, as it is
        }
        DropAhead();
        return ReadInputs(t);
    }

    /// <summary>Starts reading step t's inputs on a worker thread (nothing past the last step).</summary>
    void ReadAhead(long t)
    {
        DropAhead();
        if (t < Plan.Steps) ahead = (t, Task.Run(() => ReadInputs(t)));
    }

    /// <summary>A batch of inputs owned by no dispose scope (made in one of its own).</summary>
    Tensor ReadInputs(long t)
    {
        using var scope = NewDisposeScope();
        var x = prefix is null ? Plan.Inputs(data, t, Dtype) : prefix.Inputs(data, Plan.Batch(t));
        return x.DetachFromDisposeScope();
    }

    /// <summary>Waits for a read ahead that will not be used and frees its batch.</summary>
    void DropAhead()
    {
        if (ahead is not { } a) return;
        ahead = null;
        // Its error, if any, is not this caller's: the step that needs those inputs reads them again.
        try { a.Inputs.GetAwaiter().GetResult().Dispose(); }
        catch (Exception) when (a.Inputs.IsFaulted) { }
    }

    /// <summary>Marks steps before <paramref name="step"/> as taken (the caller has set the model's
    /// weights and the momentum buffers to those after them: a resumed run).</summary>
    internal void ContinueAt(long step) => Step = step;

    /// <summary>Takes the steps up to (not including) <paramref name="step"/>.</summary>
    public void RunTo(long step)
    {
        while (Step < step) Next();
    }

    /// <summary>The batch's weights, or null when they are all 1 (then the step is unweighted training's).</summary>
    private double[]? BatchWeights(ReadOnlySpan<int> idx)
    {
        if (weights is null) return null;
        var w = new double[idx.Length];
        bool ones = true;
        for (int i = 0; i < w.Length; i++) { w[i] = weights[idx[i]]; ones &= w[i] == 1; }
        return ones ? null : w;
    }

    /// <summary>A copy of the whole training state: parameters, buffers (BatchNorm statistics),
    /// momentum buffers and the step.</summary>
    public ReplayState Save()
    {
        using var noGrad = no_grad();
        var sd = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
        var buffers = optimizer.Buffers.Select(b => b?.clone().DetachFromDisposeScope()).ToArray();
        return new ReplayState(Step, sd, buffers);
    }

    /// <summary>Sets the training state to a saved one.</summary>
    public void Load(ReplayState state)
    {
        using var noGrad = no_grad();
        var sd = model.state_dict();
        foreach (var (k, v) in state.Tensors) sd[k].copy_(v);
        for (int i = 0; i < state.Momentum.Length; i++)
        {
            if (state.Momentum[i] is { } m) optimizer.SetBuffer(i, m);
            else optimizer.ClearBuffer(i);
        }
        Step = state.Step;
    }

    public void Dispose()
    {
        DropAhead();
        optimizer.Dispose();
        batchNorm?.Dispose();
    }
}

/// <summary>A saved training state of a <see cref="SgdReplay"/> (see <see cref="SgdReplay.Save"/>).</summary>
public sealed class ReplayState : IDisposable
{
    internal ReplayState(long step, Dictionary<string, Tensor> tensors, Tensor?[] momentum)
    {
        Step = step; Tensors = tensors; Momentum = momentum;
    }

    public long Step { get; }
    /// <summary>The model's state dict (parameters and buffers).</summary>
    public IReadOnlyDictionary<string, Tensor> Tensors { get; }
    /// <summary>Momentum buffers in trainable-parameter order (null before a parameter's first step).</summary>
    public Tensor?[] Momentum { get; }

    public void Dispose()
    {
        foreach (var t in Tensors.Values) t.Dispose();
        foreach (var t in Momentum) t?.Dispose();
    }
}
