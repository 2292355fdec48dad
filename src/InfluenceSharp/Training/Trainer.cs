using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Storage;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Training;

public enum LrSchedule { Constant, OneCycle }

/// <summary>Training settings. OneCycle is the triangular schedule of the TRAK / Kronfluence CIFAR
/// examples: linear warm-up from 0 to the peak at <see cref="PeakEpoch"/>, then linear decay to 0.</summary>
public sealed record TrainOptions
{
    public int Epochs { get; init; } = 5;
    public int BatchSize { get; init; } = 128;
    public double LearningRate { get; init; } = 0.05;
    public double Momentum { get; init; } = 0.9;
    public double WeightDecay { get; init; } = 5e-4;
    public LrSchedule Schedule { get; init; } = LrSchedule.Constant;
    /// <summary>Epoch of the one-cycle peak; null means epochs / 5 (at least one step in).</summary>
    public double? PeakEpoch { get; init; }
    public int Seed { get; init; }
    /// <summary>Random crop (padding 4) and horizontal flip; meant for CIFAR-10.</summary>
    public bool Augment { get; init; }
    /// <summary>Weights to start from instead of a fresh initialisation (see <see cref="InitWeights"/>):
    /// a safetensors file or a PyTorch state dict. The classifier head is left fresh when its shape
    /// differs (another class count).</summary>
    public string? InitFile { get; init; }
    /// <summary>The hash of <see cref="InitFile"/>, recorded by the trainer; when set, the file must
    /// still have it (e.g. when LDS retrains a run).</summary>
    public string? InitHash { get; init; }
    /// <summary>Parameter-name prefixes kept fixed (e.g. conv1, bn1, layer1): not optimised, their
    /// BatchNorm statistics not updated, and not tracked by attribution.</summary>
    public string[]? Freeze { get; init; }
    /// <summary>Null: minibatch SGD. A value: full-batch L-BFGS in float64 on the objective
    /// mean cross-entropy + (WeightDecay/2)‖θ‖² until its gradient's largest entry is at most this
    /// (a convex model such as logreg then reaches its unique optimum, the protocol under which
    /// influence functions are close to exact); one checkpoint (epoch 1), Epochs is ignored.</summary>
    public double? LbfgsTolerance { get; init; }
    /// <summary>Skip each epoch's last, incomplete minibatch (PyTorch's drop_last): for networks with
    /// BatchNorm, whose running statistics a batch of a few examples corrupts (e.g. 450 examples in
    /// batches of 32 leave a batch of 2).</summary>
    public bool DropLast { get; init; }
    /// <summary>Null: train <see cref="Epochs"/> full epochs. A value: stop after exactly this many
    /// optimiser steps (the last epoch partial when the steps do not fill it; as many epochs as that
    /// takes), with the learning-rate schedule spread over these steps and its peak at the same
    /// fraction of training (PeakEpoch / Epochs) as a run of <see cref="Epochs"/> epochs. Used to
    /// retrain a subset with the full set's step budget (<see cref="RetrainBudgets"/>); with
    /// TotalSteps = Epochs × steps per epoch it trains exactly as without it.</summary>
    public long? TotalSteps { get; init; }

    /// <summary>Optimiser steps per epoch over n examples (complete batches only with <see cref="DropLast"/>).</summary>
    public long StepsPerEpoch(int n) => DropLast ? n / BatchSize : (n + BatchSize - 1) / BatchSize;

    /// <summary>Learning rate at optimisation step t of totalSteps.</summary>
    public double LrAt(long t, long stepsPerEpoch)
    {
        if (Schedule == LrSchedule.Constant) return LearningRate;
        // With a step budget, the schedule runs over TotalSteps as if an epoch were TotalSteps / Epochs steps.
        double spe = TotalSteps is { } ts ? ts / (double)Epochs : stepsPerEpoch;
        double total = TotalSteps is { } ts2 ? ts2 : (double)Epochs * stepsPerEpoch;
        double peak = Math.Max(1, (PeakEpoch ?? Epochs / 5.0) * spe);
        double f = t <= peak ? t / peak : Math.Max(0, (total - t) / Math.Max(1, total - peak));
        return LearningRate * f;
    }
}

/// <summary>What to do with a run directory that already holds a run.</summary>
public enum ExistingRun
{
    /// <summary>Refuse it (an exception says so): the default.</summary>
    Refuse,
    /// <summary>Delete its checkpoints and derived results, then train afresh.</summary>
    Overwrite,
    /// <summary>Continue it from its last complete epoch (same model, options and data required),
    /// to the same weights as an uninterrupted run.</summary>
    Resume,
}

/// <summary>What a training run produced.</summary>
public sealed record TrainResult(nn.Module<Tensor, Tensor> Model, List<Checkpoint> Checkpoints, List<EpochMetrics> History)
{
    /// <summary>Optimiser steps taken in all (L-BFGS: iterations).</summary>
    public long Steps { get; init; }
}

/// <summary>Minibatch SGD (momentum, weight decay) with a checkpoint after every epoch. The same
/// seed gives bit-identical weights on the same machine (seeded init and shuffling, no dropout).</summary>
public sealed class Trainer
{
    /// <param name="options">The training settings (recorded in every checkpoint's sidecar).</param>
    /// <param name="progress">Receives each epoch's progress; its final update's
    /// <see cref="ProgressUpdate.Suffix"/> holds the epoch's metrics. Null: silent.</param>
    public Trainer(TrainOptions options, IProgress<ProgressUpdate>? progress = null) { Options = options; Progress = progress; }

    public TrainOptions Options { get; }

    /// <summary>Where progress goes (null: nowhere). Not part of <see cref="TrainOptions"/>, which is
    /// recorded in checkpoints and compared.</summary>
    public IProgress<ProgressUpdate>? Progress { get; }

    /// <summary>The last L-BFGS fit of this trainer (iterations, final gradient max-norm), when
    /// <see cref="TrainOptions.LbfgsTolerance"/> is set.</summary>
    public LbfgsResult? LastLbfgs { get; private set; }

    /// <summary>Trains a fresh model of <paramref name="spec"/> (seeded by the options).</summary>
    /// <param name="spec">The architecture.</param>
    /// <param name="train">The training set.</param>
    /// <param name="test">Evaluated after every epoch when given (metrics in the sidecars).</param>
    /// <param name="runDir">where checkpoints go (epoch-NNNN.safetensors + .json); null for none.</param>
    /// <param name="corruption">The label corruption applied to <paramref name="train"/>, saved as corruption.json.</param>
    /// <param name="dataSource">The data spec recorded in the sidecars, so later commands can rebuild the data.</param>
    /// <param name="existing">What to do when <paramref name="runDir"/> already holds a run.</param>
    /// <remarks>With a run directory, the run is locked for the whole training (a second trainer
    /// gets an <see cref="OutputLockedException"/> naming this one), and its record (run.json) is
    /// written at the start as incomplete and updated after every epoch. Each epoch also saves the
    /// optimizer's momentum buffers (optimizer-NNNN.safetensors, the latest only; removed when the
    /// run completes), so that <see cref="ExistingRun.Resume"/> continues bit-identically.</remarks>
    public TrainResult Train(ModelSpec spec, LabeledDataset train, LabeledDataset? test, string? runDir,
        CorruptionRecord? corruption = null, string? dataSource = null, ExistingRun existing = ExistingRun.Refuse)
    {
        var o = Options;
        if (o.Epochs < 1) throw new InfluenceSharpException($"--epochs {o.Epochs}: must be at least 1");
        if (o.BatchSize < 1) throw new InfluenceSharpException($"--batch-size {o.BatchSize}: must be at least 1");
        if (!(o.LearningRate > 0)) throw new InfluenceSharpException($"--lr {o.LearningRate}: must be positive");
        if (o.LbfgsTolerance is { } lbTol)
        {
            if (!(lbTol > 0)) throw new InfluenceSharpException($"--lbfgs-tol {lbTol}: must be positive");
            if (!(o.WeightDecay > 0)) throw new InfluenceSharpException("--lbfgs-tol: needs --weight-decay > 0 (the L2 term gives the objective a unique, finite optimum)");
            if (o.Augment) throw new InfluenceSharpException("--lbfgs-tol: not with --augment (full-batch L-BFGS minimises a fixed objective)");
            o = o with { Epochs = 1, TotalSteps = null };
        }
        if (o.TotalSteps is { } tsCheck && tsCheck < 1) throw new InfluenceSharpException($"total steps {tsCheck}: must be at least 1");
        torch.manual_seed(o.Seed);
        var model = spec.Create();
        string[] initSkipped = Array.Empty<string>();
        if (o.InitFile is not null)
        {
            var init = InitWeights.Apply(model, o.InitFile, o.InitHash);
            initSkipped = init.Skipped;
            o = o with { InitFile = Path.GetFullPath(o.InitFile), InitHash = init.Hash };
        }
        InitWeights.Freeze(model, o.Freeze);
        if (o.LbfgsTolerance is not null && model.modules().Any(m => m is TorchSharp.Modules.BatchNorm1d or TorchSharp.Modules.BatchNorm2d or TorchSharp.Modules.Dropout))
            throw new InfluenceSharpException($"--lbfgs-tol: {spec.Describe()} has BatchNorm or dropout; full-batch L-BFGS is for models without them (logreg, mlp, tabular-mlp)");
        var trainable = model.named_parameters().Where(p => p.parameter.requires_grad).ToList();
        if (trainable.Count == 0) throw new InfluenceSharpException($"--freeze {string.Join(",", o.Freeze ?? Array.Empty<string>())}: freezes every parameter; nothing to train");
        var trainableNames = trainable.Select(p => p.name).ToList();
        using var opt = new Sgd(trainable.Select(p => p.parameter), o.Momentum, o.WeightDecay);
        string fingerprint = train.Fingerprint();
        string? corruptionFile = null;
        using var runLock = runDir is null ? null : DirectoryLock.Acquire(runDir, "training run");
        if (o.DropLast && train.Count < o.BatchSize)
            throw new InfluenceSharpException($"--drop-last: {train.Count} training examples make no complete batch of {o.BatchSize}");
        int usedPerEpoch = o.DropLast ? train.Count - train.Count % o.BatchSize : train.Count;
        long stepsPerEpoch = o.StepsPerEpoch(train.Count);
        // Epochs started: the option's, or as many as the step budget needs (the last one may be partial).
        int epochs = o.TotalSteps is { } budget ? (int)((budget + stepsPerEpoch - 1) / stepsPerEpoch) : o.Epochs;
        var history = new List<EpochMetrics>();
        var checkpoints = new List<Checkpoint>();
        long step = 0;
        var augRng = new Random(unchecked(o.Seed * 7919 + 17));
        int firstEpoch = 1;
        RunRecord? record = null;
        if (runDir is not null)
        {
            OutputLock.CleanStaleTemps(runDir);
            if (corruption is not null) corruptionFile = "corruption.json";
            if (existing == ExistingRun.Resume && RunRecord.TryRead(runDir) is { } old)
            {
                RequireSameRun(runDir, old, spec, o, fingerprint, train.Count);
                // Continue after the last listed epoch whose files are all there.
                var present = old.Checkpoints.TakeWhile(c => !old.MissingIn(runDir).Contains(c)).ToList();
                if (present.Count > 0)
                {
                    var last = Checkpoint.Open(Path.Combine(runDir, present[^1]));
                    int k = last.Info.Epoch;
                    if (k != present.Count)
                        throw new InfluenceSharpException($"{runDir}: cannot resume: run.json lists {present.Count} checkpoints but the last is epoch {k}");
                    checkpoints.AddRange(present.Select(c => Checkpoint.Open(Path.Combine(runDir, c))));
                    history.AddRange(old.History.Take(k));
                    if (history.Count != k) throw new InfluenceSharpException($"{runDir}: cannot resume: run.json has metrics for {old.History.Count} epochs, not {k}");
                    Checkpoint.LoadWeights(model, last.WeightsPath, last.Info.Checksum);
                    if (k < epochs) LoadOptimizerState(opt, trainableNames, runDir, k);
                    step = last.Info.Step;
                    // The augmentation stream runs across epochs: replay the draws of the epochs done.
                    if (o.Augment) for (long i = 0; i < (long)k * train.Count; i++) { augRng.Next(9); augRng.Next(9); augRng.Next(2); }
                    firstEpoch = k + 1;
                }
            }
            else
            {
                // The init file was read already, but a --resume of this run reads it again: keep it.
                if (existing == ExistingRun.Overwrite && o.InitFile is not null)
                    Checkpoint.RefuseInputsDeletedByOverwrite(runDir, new[] { ("--init", o.InitFile) });
                Checkpoint.PrepareRunDirectory(runDir, existing == ExistingRun.Overwrite);
            }
            if (corruption is not null) Json.WriteFile(Path.Combine(runDir, corruptionFile!), corruption);
            record = new RunRecord
            {
                Model = spec, Training = o, DataSource = dataSource, DataFingerprint = fingerprint, TrainCount = train.Count,
                Checkpoints = checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), History = history.ToList(),
                Complete = firstEpoch > epochs, InitSkipped = initSkipped.Length > 0 ? initSkipped : null,
            };
            record.Write(runDir);
        }
        for (int epoch = firstEpoch; epoch <= epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            model.train();
            InitWeights.FrozenBatchNormToEval(model);
            var rng = new Random(unchecked(o.Seed * 1_000_003 + epoch));
            var order = Enumerable.Range(0, train.Count).ToArray();
            rng.Shuffle(order);
            double lossSum = 0, lrSum = 0; long correct = 0, seen = 0;
            using var bar = ProgressReporter.Start(Progress, $"epoch {epoch}/{epochs}", o.LbfgsTolerance is null ? usedPerEpoch : train.Count, "ex");
            if (o.LbfgsTolerance is { } tolerance)
            {
                var fit = Lbfgs.Fit(model, train, o.WeightDecay, tolerance, o.BatchSize, bar);
                if (fit.MaxGradient > tolerance)
                    throw new InfluenceSharpException($"--lbfgs-tol {tolerance}: L-BFGS stopped after {fit.Iterations} iterations with gradient max-norm {fit.MaxGradient:G3} (not converged)");
                LastLbfgs = fit;
                var (l0, a0) = Evaluate(model, train);
                lossSum = l0 * train.Count; correct = (long)Math.Round(a0 * train.Count); seen = train.Count;
                lrSum = o.LearningRate * stepsPerEpoch; step += fit.Iterations;
            }
            else
            for (int b = 0; b < usedPerEpoch; b += o.BatchSize)
            {
                if (o.TotalSteps is { } cap && step >= cap) break;
                using var scope = NewDisposeScope();
                int len = Math.Min(o.BatchSize, usedPerEpoch - b);
                var idx = order.AsSpan(b, len);
                var x = train.Inputs(idx);
                if (o.Augment) x = Augmentation.CropFlip(x, 4, augRng);
                var y = train.Targets(idx);
                double lr = o.LrAt(step, stepsPerEpoch);
                lrSum += lr;
                opt.ZeroGrad();
                var logits = model.forward(x);
                var loss = nn.functional.cross_entropy(logits, y);
                loss.backward();
                opt.Step(lr);
                step++;
                double l = loss.item<float>();
                if (double.IsNaN(l) || double.IsInfinity(l))
                    throw new InfluenceSharpException($"training diverged: loss is {l} at epoch {epoch}, step {step} (lower --lr?)");
                lossSum += l * len;
                correct += logits.argmax(1).eq(y).sum().item<long>();
                seen += len;
                bar?.Update(seen, $"loss {lossSum / seen:F4} acc {100.0 * correct / seen:F1}%");
            }
            var (testLoss, testAcc) = test is null ? (double.NaN, double.NaN) : Evaluate(model, test);
            var m = new EpochMetrics(lossSum / seen, (double)correct / seen, testLoss, testAcc, sw.Elapsed.TotalSeconds);
            history.Add(m);
            bar?.Complete($"train loss {m.TrainLoss:F4} acc {100 * m.TrainAccuracy:F2}%"
                + (test is null ? "" : $", test loss {testLoss:F4} acc {100 * testAcc:F2}%"));
            if (runDir is not null)
            {
                var info = new CheckpointInfo
                {
                    Epoch = epoch, Step = step, LearningRate = lrSum / stepsPerEpoch, Model = spec,
                    DataFingerprint = fingerprint, DataSource = dataSource, TrainCount = train.Count,
                    CorruptionFile = corruptionFile, CorruptedCount = corruption?.Indices.Length ?? 0,
                    Training = o, Metrics = m, InitSkipped = initSkipped.Length > 0 ? initSkipped : null,
                };
                checkpoints.Add(Checkpoint.Save(model, Path.Combine(runDir, $"epoch-{epoch:D4}.safetensors"), info));
                bool last = epoch == epochs;
                if (!last) SaveOptimizerState(opt, trainableNames, runDir, epoch);
                // The record goes after the files it lists: it never names a checkpoint that is not there.
                record = record! with
                {
                    Checkpoints = checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), History = history.ToList(), Complete = last,
                };
                record.Write(runDir);
                foreach (var f in Directory.GetFiles(runDir, "optimizer-*.safetensors"))
                    if (last || f != Checkpoint.OptimizerStatePath(runDir, epoch)) File.Delete(f);
            }
        }
        model.eval();
        return new TrainResult(model, checkpoints, history) { Steps = step };
    }

    static void RequireSameRun(string runDir, RunRecord old, ModelSpec spec, TrainOptions o, string fingerprint, int count)
    {
        void Check(string field, object? found, object? want)
        {
            if (!Equals(found, want))
                throw new InfluenceSharpException($"{runDir}: cannot resume: the run was started with {field} = {found}, this one has {field} = {want}; resume with the same options");
        }
        if (Json.Serialize(old.Model) != Json.Serialize(spec))
            throw new InfluenceSharpException($"{runDir}: cannot resume: the run was started with model = {old.Model.Describe()}, this one has model = {spec.Describe()}; resume with the same options");
        Check("training", Json.Serialize(old.Training).ReplaceLineEndings(" "), Json.Serialize(o).ReplaceLineEndings(" "));
        Check("data_fingerprint", old.DataFingerprint, fingerprint);
        Check("train_count", old.TrainCount, count);
    }

    static void SaveOptimizerState(Sgd opt, List<string> names, string runDir, int epoch)
    {
        var state = new Dictionary<string, Tensor>();
        for (int i = 0; i < names.Count; i++)
            if (opt.Buffers[i] is { } b) state["momentum." + names[i]] = b;
        SafeTensors.Save(Checkpoint.OptimizerStatePath(runDir, epoch), state, new Dictionary<string, string> { ["epoch"] = epoch.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    }

    static void LoadOptimizerState(Sgd opt, List<string> names, string runDir, int epoch)
    {
        string path = Checkpoint.OptimizerStatePath(runDir, epoch);
        if (!File.Exists(path))
            throw new InfluenceSharpException($"{path}: cannot resume after epoch {epoch}: the optimizer state (momentum) of that epoch is missing");
        using var file = SafeTensors.Load(path);
        for (int i = 0; i < names.Count; i++)
            if (file.Tensors.TryGetValue("momentum." + names[i], out var t)) opt.SetBuffer(i, t);
    }

    /// <summary>Mean cross-entropy and accuracy of a model on a dataset (eval mode, no grad).</summary>
    public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, LabeledDataset data, int batchSize = 1000)
    {
        bool wasTraining = model.training;
        model.eval();
        double lossSum = 0; long correct = 0;
        using (no_grad())
        {
            var all = Enumerable.Range(0, data.Count).ToArray();
            for (int b = 0; b < data.Count; b += batchSize)
            {
                using var scope = NewDisposeScope();
                var idx = all.AsSpan(b, Math.Min(batchSize, data.Count - b));
                var logits = model.forward(data.Inputs(idx));
                var y = data.Targets(idx);
                lossSum += nn.functional.cross_entropy(logits, y, reduction: nn.Reduction.Sum).item<float>();
                correct += logits.argmax(1).eq(y).sum().item<long>();
            }
        }
        if (wasTraining) model.train();
        return (lossSum / data.Count, (double)correct / data.Count);
    }
}

/// <summary>Standard CIFAR augmentation: random crop after zero padding, and horizontal flip.</summary>
public static class Augmentation
{
    public static Tensor CropFlip(Tensor x, int pad, Random rng)
    {
        long n = x.shape[0], h = x.shape[2], w = x.shape[3];
        var padded = nn.functional.pad(x, new long[] { pad, pad, pad, pad });
        var outs = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            int dy = rng.Next(2 * pad + 1), dx = rng.Next(2 * pad + 1);
            var crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
            outs[i] = rng.Next(2) == 1 ? crop.flip(2) : crop;
        }
        return torch.stack(outs);
    }
}
