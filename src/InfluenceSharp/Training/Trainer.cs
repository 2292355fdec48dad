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
    /// <summary>Examples per minibatch of model training. (Attribution settings call their batches
    /// TrainBatchSize and QueryBatchSize: training examples and queries per attribution batch.)</summary>
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
    /// <summary>Compute the outputs of the frozen leading layers once per image and train only the
    /// rest (<see cref="FrozenPrefix"/>): the same training up to float rounding, at the cost of the
    /// trained layers alone. Recorded in the run, so its retrainings (evaluate, curate) use it too.
    /// Image data, a model that splits into stages (resnet18, Sequential models), no augmentation.
    /// Not written when false (runs recorded before it read the same).</summary>
    [System.Text.Json.Serialization.JsonIgnore(Condition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault)]
    public bool CacheFrozenPrefix { get; init; }

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

    /// <summary>The frozen-prefix cache the last training read (<see cref="TrainOptions.CacheFrozenPrefix"/>), or null.</summary>
    public FrozenPrefix? LastPrefix { get; private set; }

    /// <summary>Trains a fresh model of <paramref name="spec"/> (seeded by the options).</summary>
    /// <param name="spec">The architecture.</param>
    /// <param name="train">The training set.</param>
    /// <param name="test">Evaluated after every epoch when given (metrics in the sidecars).</param>
    /// <param name="runDir">where checkpoints go (epoch-NNNN.safetensors + .json); null for none.</param>
    /// <param name="corruption">The label corruption applied to <paramref name="train"/>, saved as corruption.json.</param>
    /// <param name="dataSource">The data spec recorded in the sidecars, so later commands can rebuild the data.</param>
    /// <param name="existing">What to do when <paramref name="runDir"/> already holds a run.</param>
    /// <param name="exampleWeights">Per-example weights w of the training loss (see <see cref="SgdReplay"/>):
    /// null or all 1 trains the run itself; w_i = 0 drops example i from its batches without changing
    /// the order of the others. Minibatch SGD without a run directory only.</param>
    /// <remarks>With a run directory, the run is locked for the whole training (a second trainer
    /// gets an <see cref="OutputLockedException"/> naming this one), and its record (run.json) is
    /// written at the start as incomplete and updated after every epoch. Each epoch also saves the
    /// optimizer's momentum buffers (optimizer-NNNN.safetensors, the latest only; removed when the
    /// run completes), so that <see cref="ExistingRun.Resume"/> continues bit-identically. The
    /// directory also gets what a replay needs: the initial weights (replay-init.safetensors) and the
    /// per-step schedule (replay.json).</remarks>
    public TrainResult Train(ModelSpec spec, LabeledDataset train, LabeledDataset? test, string? runDir,
        CorruptionRecord? corruption = null, string? dataSource = null, ExistingRun existing = ExistingRun.Refuse,
        double[]? exampleWeights = null)
    {
        var o = Validated(Options);
        if (exampleWeights is not null && (runDir is not null || o.LbfgsTolerance is not null))
            throw new InfluenceSharpException("example weights: only for minibatch SGD without a run directory (a replay)");
        var (model, initSkipped) = CreateModel(spec, ref o);
        using var runLock = runDir is null ? null : DirectoryLock.Acquire(runDir, "training run");
        var plan = o.LbfgsTolerance is null ? ReplayPlan.For(o, train.Count) : null;
        var prefix = o.CacheFrozenPrefix ? FrozenPrefix.Open(model, train, null, Progress) : null;
        LastPrefix = prefix;
        using var replay = plan is null ? null : new SgdReplay(model, train, plan, exampleWeights, prefix);
        var run = new RunProgress(spec, o, train.Fingerprint(), plan?.Epochs ?? 1, initSkipped, corruption, dataSource);
        if (runDir is not null) OpenRunDirectory(runDir, run, model, train, replay, existing);
        for (int epoch = run.FirstEpoch; epoch <= run.Epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            using var bar = ProgressReporter.Start(Progress, $"epoch {epoch}/{run.Epochs}", plan?.UsedPerEpoch ?? train.Count, "ex");
            var (lossSum, lrSum, correct, seen) = replay is null ? LbfgsEpoch(model, train, o, bar, run) : SgdEpoch(replay, epoch, bar);
            run.Step = replay?.Step ?? run.Step;
            var (testLoss, testAcc) = test is null ? (double.NaN, double.NaN) : Evaluate(model, test, prefix: prefix);
            var m = new EpochMetrics(lossSum / seen, (double)correct / seen, testLoss, testAcc, sw.Elapsed.TotalSeconds);
            run.History.Add(m);
            bar?.Complete($"train loss {m.TrainLoss:F4} acc {100 * m.TrainAccuracy:F2}%"
                + (test is null ? "" : $", test loss {testLoss:F4} acc {100 * testAcc:F2}%"));
            if (runDir is not null) SaveEpoch(runDir, run, model, replay, epoch, lrSum / o.StepsPerEpoch(train.Count), m);
        }
        model.eval();
        return new TrainResult(model, run.Checkpoints, run.History) { Steps = run.Step };
    }

    /// <summary>The options after checking them (an L-BFGS fit is one epoch without a step budget).</summary>
    static TrainOptions Validated(TrainOptions o)
    {
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
        FrozenPrefix.CheckOptions(o);
        if (o.TotalSteps is { } tsCheck && tsCheck < 1) throw new InfluenceSharpException($"total steps {tsCheck}: must be at least 1");
        return o;
    }

    /// <summary>The seeded initial model (from the init file when given, frozen layers marked); records
    /// the init file's full path and hash in <paramref name="o"/>.</summary>
    static (nn.Module<Tensor, Tensor> Model, string[] InitSkipped) CreateModel(ModelSpec spec, ref TrainOptions o)
    {
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
        if (!model.parameters().Any(p => p.requires_grad))
            throw new InfluenceSharpException($"--freeze {string.Join(",", o.Freeze ?? Array.Empty<string>())}: freezes every parameter; nothing to train");
        return (model, initSkipped);
    }

    /// <summary>The state of a run being trained: what its record and sidecars say.</summary>
    sealed class RunProgress(ModelSpec spec, TrainOptions options, string fingerprint, int epochs, string[] initSkipped,
        CorruptionRecord? corruption, string? dataSource)
    {
        public ModelSpec Spec { get; } = spec;
        public TrainOptions Options { get; } = options;
        public string Fingerprint { get; } = fingerprint;
        public int Epochs { get; } = epochs;
        public string[] InitSkipped { get; } = initSkipped;
        public CorruptionRecord? Corruption { get; } = corruption;
        public string? DataSource { get; } = dataSource;
        public string? CorruptionFile => Corruption is null ? null : "corruption.json";
        public List<EpochMetrics> History { get; } = new();
        public List<Checkpoint> Checkpoints { get; } = new();
        public long Step { get; set; }
        public int FirstEpoch { get; set; } = 1;
        public RunRecord? Record { get; set; }
    }

    /// <summary>Starts a run directory afresh, or picks up an interrupted run in it (weights, momentum,
    /// step, history), and writes its record.</summary>
    void OpenRunDirectory(string runDir, RunProgress run, nn.Module<Tensor, Tensor> model, LabeledDataset train, SgdReplay? replay, ExistingRun existing)
    {
        var o = run.Options;
        OutputLock.CleanStaleTemps(runDir);
        if (existing == ExistingRun.Resume && RunRecord.TryRead(runDir) is { } old)
        {
            RequireSameRun(runDir, old, run.Spec, o, run.Fingerprint, train.Count);
            // Continue after the last listed epoch whose files are all there.
            var present = old.Checkpoints.TakeWhile(c => !old.MissingIn(runDir).Contains(c)).ToList();
            if (present.Count > 0)
            {
                var last = Checkpoint.Open(Path.Combine(runDir, present[^1]));
                int k = last.Info.Epoch;
                if (k != present.Count)
                    throw new InfluenceSharpException($"{runDir}: cannot resume: run.json lists {present.Count} checkpoints but the last is epoch {k}");
                run.Checkpoints.AddRange(present.Select(c => Checkpoint.Open(Path.Combine(runDir, c))));
                run.History.AddRange(old.History.Take(k));
                if (run.History.Count != k) throw new InfluenceSharpException($"{runDir}: cannot resume: run.json has metrics for {old.History.Count} epochs, not {k}");
                Checkpoint.LoadWeights(model, last.WeightsPath, last.Info.Checksum);
                if (k < run.Epochs && replay is not null) LoadOptimizerState(replay.Optimizer, replay.Trainable.Select(p => p.name).ToList(), runDir, k);
                run.Step = last.Info.Step;
                replay?.ContinueAt(run.Step);
                run.FirstEpoch = k + 1;
            }
        }
        else
        {
            // The init file was read already, but a --resume of this run reads it again: keep it.
            if (existing == ExistingRun.Overwrite && o.InitFile is not null)
                Checkpoint.RefuseInputsDeletedByOverwrite(runDir, new[] { ("--init", o.InitFile) });
            Checkpoint.PrepareRunDirectory(runDir, existing == ExistingRun.Overwrite);
        }
        if (run.FirstEpoch == 1 && replay is not null)
        {
            SafeTensors.Save(Path.Combine(runDir, ReplayRecord.InitFileName), model.state_dict());
            replay.Plan.Record().Write(runDir);
        }
        if (run.Corruption is not null) Json.WriteFile(Path.Combine(runDir, run.CorruptionFile!), run.Corruption);
        run.Record = new RunRecord
        {
            Model = run.Spec, Training = o, DataSource = run.DataSource, DataFingerprint = run.Fingerprint, TrainCount = train.Count,
            Checkpoints = run.Checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), History = run.History.ToList(),
            Complete = run.FirstEpoch > run.Epochs, InitSkipped = run.InitSkipped.Length > 0 ? run.InitSkipped : null,
        };
        run.Record.Write(runDir);
    }

    /// <summary>One epoch of minibatch SGD; returns the sums its metrics are made of.</summary>
    static (double LossSum, double LrSum, long Correct, long Seen) SgdEpoch(SgdReplay replay, int epoch, ProgressReporter? bar)
    {
        var plan = replay.Plan;
        double lossSum = 0, lrSum = 0; long correct = 0, seen = 0;
        long end = plan.FirstStep(epoch + 1);
        for (long t = plan.FirstStep(epoch); t < end; t++)
        {
            lrSum += plan.LearningRate(t);
            var s = replay.Next();
            lossSum += s.Loss * s.Count;
            correct += s.Correct;
            seen += s.Count;
            bar?.Update(seen, $"loss {lossSum / seen:F4} acc {100.0 * correct / seen:F1}%");
        }
        return (lossSum, lrSum, correct, seen);
    }

    /// <summary>The full-batch L-BFGS fit (the run's one epoch).</summary>
    (double LossSum, double LrSum, long Correct, long Seen) LbfgsEpoch(nn.Module<Tensor, Tensor> model, LabeledDataset train, TrainOptions o, ProgressReporter? bar, RunProgress run)
    {
        model.train();
        double tolerance = o.LbfgsTolerance!.Value;
        var fit = Lbfgs.Fit(model, train, o.WeightDecay, tolerance, o.BatchSize, bar);
        if (fit.MaxGradient > tolerance)
            throw new InfluenceSharpException($"--lbfgs-tol {tolerance}: L-BFGS stopped after {fit.Iterations} iterations with gradient max-norm {fit.MaxGradient:G3} (not converged)");
        LastLbfgs = fit;
        var (l0, a0) = Evaluate(model, train);
        run.Step += fit.Iterations;
        return (l0 * train.Count, o.LearningRate * o.StepsPerEpoch(train.Count), (long)Math.Round(a0 * train.Count), train.Count);
    }

    /// <summary>Saves epoch <paramref name="epoch"/>'s checkpoint and momentum, then the record that lists them.</summary>
    static void SaveEpoch(string runDir, RunProgress run, nn.Module<Tensor, Tensor> model, SgdReplay? replay, int epoch, double meanLr, EpochMetrics m)
    {
        var info = new CheckpointInfo
        {
            Epoch = epoch, Step = run.Step, LearningRate = meanLr, Model = run.Spec,
            DataFingerprint = run.Fingerprint, DataSource = run.DataSource, TrainCount = run.Record!.TrainCount,
            CorruptionFile = run.CorruptionFile, CorruptedCount = run.Corruption?.Indices.Length ?? 0,
            Training = run.Options, Metrics = m, InitSkipped = run.InitSkipped.Length > 0 ? run.InitSkipped : null,
        };
        run.Checkpoints.Add(Checkpoint.Save(model, Path.Combine(runDir, $"epoch-{epoch:D4}.safetensors"), info));
        bool last = epoch == run.Epochs;
        if (!last && replay is not null) SaveOptimizerState(replay.Optimizer, replay.Trainable.Select(p => p.name).ToList(), runDir, epoch);
        // The record goes after the files it lists: it never names a checkpoint that is not there.
        run.Record = run.Record with
        {
            Checkpoints = run.Checkpoints.Select(c => Path.GetFileName(c.WeightsPath)).ToArray(), History = run.History.ToList(), Complete = last,
        };
        run.Record.Write(runDir);
        foreach (var f in Directory.GetFiles(runDir, "optimizer-*.safetensors"))
            if (last || f != Checkpoint.OptimizerStatePath(runDir, epoch)) File.Delete(f);
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

    /// <summary>Mean cross-entropy and accuracy of a model on a dataset (eval mode, no grad); through
    /// <paramref name="prefix"/>'s cached outputs when it covers the data.</summary>
    public static (double Loss, double Accuracy) Evaluate(nn.Module<Tensor, Tensor> model, LabeledDataset data, int batchSize = 1000, FrozenPrefix? prefix = null)
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
                var logits = FrozenPrefix.Logits(model, prefix, data, idx);
                var y = data.Targets(idx);
                lossSum += GptObjective.MeanLoss(logits, y).item<float>() * y.shape[0];
                correct += GptObjective.Correct(logits, y);
            }
        }
        if (wasTraining) model.train();
        return (lossSum / data.Count, (double)correct / data.Count);
    }
}

/// <summary>Standard CIFAR augmentation: random crop after zero padding, and horizontal flip.</summary>
public static class Augmentation
{
    /// <summary>Zero padding around each image before the crop.</summary>
    public const int Padding = 4;

    /// <summary>Crops and flips each image of <paramref name="x"/> as <paramref name="draws"/> say:
    /// three per image (crop row and column offsets in [0, 2·<see cref="Padding"/>], flip 0 or 1).</summary>
    public static Tensor CropFlip(Tensor x, byte[] draws)
    {
        long n = x.shape[0], h = x.shape[2], w = x.shape[3];
        if (draws.Length != 3 * n) throw new ArgumentException($"{draws.Length} augmentation draws for {n} images");
        var padded = nn.functional.pad(x, new long[] { Padding, Padding, Padding, Padding });
        var outs = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            int dy = draws[3 * i], dx = draws[3 * i + 1];
            var crop = padded[i].narrow(1, dy, h).narrow(2, dx, w);
            outs[i] = draws[3 * i + 2] == 1 ? crop.flip(2) : crop;
        }
        return torch.stack(outs);
    }
}
