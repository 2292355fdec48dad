using InfluenceSharp.Data;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Tests.Methods;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Training;

/// <summary>Replayable training: a run records what replay needs, a replay with w = 1 takes the same
/// steps bit for bit, and w_i = 0 drops example i from its batches and nothing else.</summary>
public class ReplayTests
{
    [Fact]
    public void ReplayWithUnitWeightsReproducesEveryCheckpointBitIdentically()
    {
        using var dir = new TempDir();
        var train = Embedded.Split.Train.Subset(Enumerable.Range(0, 150).ToArray());
        var spec = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 16 });
        // One-cycle, momentum, weight decay, augmentation, and a last partial batch per epoch.
        var o = new TrainOptions { Epochs = 3, BatchSize = 32, LearningRate = 0.1, Schedule = LrSchedule.OneCycle, Augment = true, Seed = 4 };
        var run = new Trainer(o).Train(spec, train, null, dir.Path);
        var record = Json.ReadFile<ReplayRecord>(ReplayRecord.PathIn(dir.Path));
        var plan = ReplayPlan.For(o, train.Count);
        Assert.Equal(15, record.Steps);
        Assert.Equal(Enumerable.Range(0, 15).Select(t => o.LrAt(t, 5)), record.LearningRates);

        // Replay from the recorded initial weights, checkpoint by checkpoint.
        using var model = spec.Create();
        Checkpoint.LoadWeights(model, Path.Combine(dir.Path, ReplayRecord.InitFileName));
        using var replay = new SgdReplay(model, train, plan, Enumerable.Repeat(1.0, train.Count).ToArray());
        for (int epoch = 1; epoch <= 3; epoch++)
        {
            replay.RunTo(plan.FirstStep(epoch + 1));
            using var saved = SafeTensors.Load(run.Checkpoints[epoch - 1].WeightsPath);
            foreach (var (name, p) in model.named_parameters())
                Assert.True(TensorAssert.BitEqual(p, saved.Tensors[name]), $"epoch {epoch}: {name} differs from the checkpoint");
        }

        // The trainer with weights 1 (no run directory) ends at the same weights too.
        using var again = new Trainer(o).Train(spec, train, null, null, exampleWeights: Enumerable.Repeat(1.0, train.Count).ToArray()).Model;
        using var last = SafeTensors.Load(run.Checkpoints[^1].WeightsPath);
        foreach (var (name, p) in again.named_parameters()) Assert.True(TensorAssert.BitEqual(p, last.Tensors[name]), name);
    }

    /// <summary>Float64 SGD written out by hand over the plan's batches with the removed examples taken
    /// out of each batch (BatchNorm then sees only the kept ones) and the loss divided by the full batch size.</summary>
    static Module<Tensor, Tensor> HandTrained(Func<Module<Tensor, Tensor>> factory, InfluenceSharp.Data.LabeledDataset data, ReplayPlan plan, HashSet<int> removed)
    {
        var model = factory();
        var ps = model.parameters().ToArray();
        var bufs = new Tensor?[ps.Length];
        for (long t = 0; t < plan.Steps; t++)
        {
            using var scope = NewDisposeScope();
            model.train();
            var batch = plan.Batch(t).ToArray();
            var kept = batch.Where(i => !removed.Contains(i)).ToArray();
            foreach (var p in ps) p.grad?.zero_();
            var logits = model.forward(data.Inputs(kept).to_type(ScalarType.Float64));
            var loss = functional.cross_entropy(logits, data.Targets(kept), reduction: Reduction.Sum) / batch.Length;
            loss.backward();
            using var noGrad = no_grad();
            for (int k = 0; k < ps.Length; k++)
            {
                var d = ps[k].grad! + plan.WeightDecay * ps[k];
                bufs[k] = bufs[k] is null ? d.clone().DetachFromDisposeScope() : (plan.Momentum * bufs[k]! + d).DetachFromDisposeScope();
                ps[k].sub_(plan.LearningRate(t) * bufs[k]!);
            }
        }
        return model;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZeroWeightDropsTheExampleFromItsBatchesAndNothingElse(bool conv)
    {
        var train = conv ? UnrolledTestsData.Images(30) : UnrolledTestsData.Flat(30);
        var o = new TrainOptions { Epochs = 3, BatchSize = 7, LearningRate = 0.1, Momentum = 0.9, WeightDecay = 0.01, Schedule = LrSchedule.OneCycle, Seed = 2 };
        var plan = ReplayPlan.For(o, train.Count);
        Func<Module<Tensor, Tensor>> factory = () =>
        {
            torch.manual_seed(3);
            Module<Tensor, Tensor> m = conv ? new BnConvNet(3) : new TwoLayerMlp(16, 6, 3);
            return m.to(ScalarType.Float64);
        };
        var removed = new HashSet<int> { 1, 4, 17, 29 };
        var w = Enumerable.Range(0, train.Count).Select(i => removed.Contains(i) ? 0.0 : 1.0).ToArray();
        using var weighted = factory();
        using (var replay = new SgdReplay(weighted, train, plan, w)) replay.RunTo(plan.Steps);
        using var hand = HandTrained(factory, train, plan, removed);
        var a = weighted.state_dict();
        foreach (var (name, t) in hand.state_dict())
        {
            if (!t.is_floating_point()) continue;
            double diff = (a[name] - t).abs().max().item<double>();
            Assert.True(diff < 1e-10, $"{name}: weighted replay and hand-written removal differ by {diff}");
        }
        // And the removal mattered.
        using var full = factory();
        using (var replay = new SgdReplay(full, train, plan)) replay.RunTo(plan.Steps);
        Assert.True((full.state_dict()["fc" + (conv ? "" : "2") + ".weight"] - a["fc" + (conv ? "" : "2") + ".weight"]).abs().max().item<double>() > 1e-4);
    }
}

/// <summary>Small synthetic data sets for the replay tests.</summary>
static class UnrolledTestsData
{
    static float[] Values(int count, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();
    }

    public static InfluenceSharp.Data.FloatDataset Flat(int n) =>
        new("flat", Values(n * 16, 1), new[] { 16 }, Enumerable.Range(0, n).Select(i => i % 3).ToArray(), 3);

    public static InfluenceSharp.Data.FloatDataset Images(int n) =>
        new("images", Values(n * 36, 2), new[] { 1, 6, 6 }, Enumerable.Range(0, n).Select(i => i % 3).ToArray(), 3);
}

/// <summary>Training reads the next batch's inputs on a worker thread while the current step
/// computes, and reads exactly the plan's batches, each once, in step order.</summary>
public class ReadAheadTests
{
    /// <summary>A data set that records each inputs read (indices, thread) and says when the second
    /// batch has been asked for.</summary>
    private sealed class WatchedDataset(LabeledDataset inner) : LabeledDataset(inner.Name, inner.Labels, inner.NumClasses, inner.ClassNames)
    {
        public readonly System.Collections.Concurrent.ConcurrentQueue<(int[] Indices, int Thread)> Reads = new();
        public readonly ManualResetEventSlim SecondRead = new();
        public override int Channels => inner.Channels;
        public override int Height => inner.Height;
        public override int Width => inner.Width;
        public override LabeledDataset Subset(IReadOnlyList<int> indices, string? name = null) => throw new NotSupportedException();
        public override LabeledDataset WithLabels(int[] labels, string? name = null) => throw new NotSupportedException();
        public override Tensor Inputs(ReadOnlySpan<int> indices, Device? device = null)
        {
            Reads.Enqueue((indices.ToArray(), Environment.CurrentManagedThreadId));
            if (Reads.Count == 2) SecondRead.Set();
            return inner.Inputs(indices, device);
        }
        public override string Fingerprint() => inner.Fingerprint();
        public override byte[] DisplayPixels(int index) => inner.DisplayPixels(index);
    }

    /// <summary>Waits, in its first forward pass, until the second batch is being read (at most
    /// 20 s), and records whether it was.</summary>
    private sealed class WaitingModel : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> inner;
        private readonly ManualResetEventSlim signal;
        public bool? SawSecondReadDuringFirstStep;

        public WaitingModel(Module<Tensor, Tensor> inner, ManualResetEventSlim signal) : base(nameof(WaitingModel))
        {
            this.inner = inner; this.signal = signal;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            SawSecondReadDuringFirstStep ??= signal.Wait(TimeSpan.FromSeconds(20));
            return inner.forward(x);
        }
    }

    [Fact]
    public void TheNextBatchIsReadWhileTheStepComputes()
    {
        torch.manual_seed(TestSeed.For());
        var data = new WatchedDataset(Embedded.Split.Train.Subset(Enumerable.Range(0, 100).ToArray()));
        var o = new TrainOptions { Epochs = 2, BatchSize = 32, LearningRate = 0.05, Augment = true, Seed = 3 };
        var plan = ReplayPlan.For(o, data.Count);
        using var model = new WaitingModel(ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 8 }).Create(), data.SecondRead);
        using (var replay = new SgdReplay(model, data, plan)) replay.RunTo(plan.Steps);
        Assert.True(model.SawSecondReadDuringFirstStep, "step 1's inputs were not read while step 0 computed");
        var reads = data.Reads.ToArray();
        Assert.Equal(plan.Steps, reads.Length);
        for (int t = 0; t < plan.Steps; t++) Assert.Equal(plan.Batch(t).ToArray(), reads[t].Indices);
        Assert.NotEqual(Environment.CurrentManagedThreadId, reads[1].Thread);
    }
}
