using InfluenceSharp.Runs;
using InfluenceSharp.Methods.Trak;

namespace InfluenceSharp.Methods.InfluenceFunctions;

/// <summary>Influence functions from fitted curvature factors (<see cref="FactorFitter"/> +
/// <see cref="InfluenceFunction"/>), at the run's last checkpoint or summed over several.</summary>
public abstract class FactoredMethodDescriptor : MethodDescriptor
{
    /// <summary>The Hessian approximation.</summary>
    public abstract FactorStrategy Strategy { get; }

    /// <summary>Track only the model's last Linear layer (its logits' layer).</summary>
    protected virtual bool LastLinearOnly => false;

    /// <summary>True when it tracks only the model's last Linear layer (whatever the layer filter).</summary>
    public bool TracksLastLinearOnly => LastLinearOnly;

    public override MethodOption Uses =>
        MethodOption.Measure | MethodOption.Damping | MethodOption.TrainBatchSize | MethodOption.Seed | MethodOption.IfEpochs
        | (LastLinearOnly ? MethodOption.None : MethodOption.Layers)
        | (Strategy == FactorStrategy.Identity ? MethodOption.None : MethodOption.Fisher);

    public override string? DampingHeuristic => DampingDefaults.FactoredHeuristic;

    // Measured on the tinted benchmark (bench/README.md, "D3M with EK-FAC"): removing the examples
    // EK-FAC and K-FAC rank most detrimental for d3m lowered worst-group accuracy below random removal;
    // the exact influence does the same on a logistic-regression version.
    public override string? GroupObjectiveWarning => Strategy is FactorStrategy.Ekfac or FactorStrategy.Kfac
        ? GroupObjectiveWarnings.Accurate : null;

    public override string? Refuses(MethodOption option) =>
        LastLinearOnly && option == MethodOption.Layers
            ? $"{Name} always uses the model's last Linear layer; to choose layers use --methods {Strategy.ToString().ToLowerInvariant()}" : null;

    public override string Label(MethodSettings s)
    {
        string label = Name;
        if (s.IfEpochs != "last") label += "-epochs-" + s.IfEpochs.Replace(',', '_');
        if (s.Fisher == FisherType.Empirical && Uses.HasFlag(MethodOption.Fisher)) label += "-empirical";
        return label;
    }

    public override IAttributionMethod Build(Run run, MethodSettings s, MethodContext context)
    {
        var task = RunTask.For(run, s);
        string? layers = LastLinearOnly ? LastLinear(run) : s.Layers;
        var fo = new FactorOptions { Strategy = Strategy, Fisher = s.Fisher, Layers = layers, TrainBatchSize = s.TrainBatchSize, Seed = s.Seed, Progress = context.Progress };
        var so = new ScoreOptions { Damping = DampingDefaults.Factored(s.Damping, run.Last), TrainBatchSize = s.TrainBatchSize, Progress = context.Progress };
        InfluenceFunction AtCheckpoint(Training.Checkpoint c)
        {
            var model = c.LoadModel();
            var factors = new FactorFitter(model, task, fo, context.Profiler).Fit(run.Data.Train)!;
            return new InfluenceFunction(model, task, factors, so, context.Profiler);
        }
        if (s.IfEpochs == "last") return AtCheckpoint(run.Last);
        // Influence functions summed over the trajectory: each checkpoint's own curvature, weighted by its step size.
        var ckpts = Ensemble.RunCheckpoints(run, s.IfEpochs, "--if-epochs");
        context.Log?.Invoke($"{Name}: summed over {ckpts.Count} checkpoint(s), epochs {string.Join(",", ckpts.Select(c => c.Info.Epoch))}, weighted by step size");
        return new CheckpointSum($"{Name}-epochs-{s.IfEpochs}", ckpts.Select(c =>
        {
            double eta = c.Info.LearningRate;
            if (!(eta > 0) || !double.IsFinite(eta))
                throw new InfluenceSharpException($"--if-epochs: {c.WeightsPath} records no positive learning rate (step size {eta}); its score cannot be weighted");
            return ((IAttributionMethod)AtCheckpoint(c), eta);
        }).ToList());
    }

    /// <summary>The name of the run's model's last trainable Linear layer (its logits' layer).</summary>
    string LastLinear(Run run)
    {
        var model = run.Last.LoadModel();
        var last = Gradients.TrackedLayer.Find(model).LastOrDefault(l => l.Type is Gradients.LinearLayerType)
            ?? throw new InfluenceSharpException($"{Name}: {run.Last.Info.Model.Describe()} has no trainable Linear layer");
        return last.Name;
    }
}

/// <summary>EK-FAC influence functions on every tracked layer.</summary>
public sealed class EkfacMethod : FactoredMethodDescriptor
{
    public override string Name => "ekfac";
    public override int Order => 10;
    public override FactorStrategy Strategy => FactorStrategy.Ekfac;
    public override MethodRole DefaultFor => MethodRole.Attribution | MethodRole.Demo;
}

/// <summary>EK-FAC on the model's last Linear layer only (the layer tracin-last uses): the detection
/// method of the method guide.</summary>
public sealed class EkfacLastMethod : FactoredMethodDescriptor
{
    public override string Name => "ekfac-last";
    public override int Order => 20;
    public override FactorStrategy Strategy => FactorStrategy.Ekfac;
    protected override bool LastLinearOnly => true;
    public override MethodRole DefaultFor => MethodRole.Detection;
}

/// <summary>K-FAC influence functions.</summary>
public sealed class KfacMethod : FactoredMethodDescriptor
{
    public override string Name => "kfac";
    public override int Order => 30;
    public override FactorStrategy Strategy => FactorStrategy.Kfac;
}

/// <summary>Diagonal-Fisher influence functions.</summary>
public sealed class DiagonalMethod : FactoredMethodDescriptor
{
    public override string Name => "diagonal";
    public override int Order => 40;
    public override FactorStrategy Strategy => FactorStrategy.Diagonal;
}

/// <summary>Identity curvature: damped gradient dot products.</summary>
public sealed class IdentityMethod : FactoredMethodDescriptor
{
    public override string Name => "identity";
    public override int Order => 50;
    public override FactorStrategy Strategy => FactorStrategy.Identity;
}
