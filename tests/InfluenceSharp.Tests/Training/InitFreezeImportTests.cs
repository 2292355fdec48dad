using InfluenceSharp.Gradients;
using InfluenceSharp.Models;
using InfluenceSharp.Storage;
using InfluenceSharp.Tests.Cli;
using InfluenceSharp.Training;
using TorchSharp;
using TorchSharp.PyBridge;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Tests.Training;

/// <summary>A user's own module, as `--model path/to/Assembly.dll:Namespace.Type` names it: a public
/// constructor taking the class count.</summary>
public sealed class TinyUserNet : Module<Tensor, Tensor>
{
    private readonly TorchSharp.Modules.Linear hidden, head;

    public TinyUserNet(int numClasses) : base(nameof(TinyUserNet))
    {
        hidden = Linear(28 * 28, 12);
        head = Linear(12, numClasses);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => head.call(functional.relu(hidden.call(x.flatten(1))));
}

/// <summary>The other accepted shape: a static Create(int numClasses) factory.</summary>
public static class TinyUserFactory
{
    public static Module<Tensor, Tensor> Create(int numClasses) =>
        Sequential(("flat", Flatten()), ("fc", Linear(28 * 28, numClasses)));
}

[Collection("cli")]   // Console redirection is process-wide
public class InitFreezeImportTests
{
    static (int Code, string Out, string Err) Run(params string[] args) => CliRunner.Run(args);

    static readonly string[] Small = { "--data", "embedded", "--train-count", "100", "--epochs", "1", "--batch-size", "25", "--quiet" };

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    static Dictionary<string, Tensor> StateOf(string checkpoint)
    {
        using var f = SafeTensors.Load(checkpoint);
        return f.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value.clone().DetachFromDisposeScope());
    }

    /// <summary>`train --init` from a bare safetensors (no sidecar, as PyTorch writes it) with
    /// `--freeze fc1`: the frozen layer ends exactly as loaded, the rest trains; the init file (path,
    /// hash) and the frozen prefixes are in the sidecar and run.json; attribution tracks only fc2.</summary>
    [Fact]
    public void TrainFromABareSafetensorsWithAFrozenLayer()
    {
        using var dir = new TempDir();
        string a = dir.File("a"), b = dir.File("b");
        var r = Run(new[] { "train", "--model", "mlp", "--widths", "16", "--out", a }.Concat(Small).ToArray());
        Assert.True(r.Code == 0, r.Err);
        var stateA = StateOf(Path.Combine(a, "epoch-0001.safetensors"));
        string bare = dir.File("bare.safetensors");
        SafeTensors.Save(bare, stateA);
        Assert.False(File.Exists(Checkpoint.SidecarPath(bare)));

        r = Run(new[] { "train", "--model", "mlp", "--widths", "16", "--out", b, "--init", bare, "--freeze", "fc1", "--seed", "3" }.Concat(Small).ToArray());
        Assert.True(r.Code == 0, r.Err);
        var stateB = StateOf(Path.Combine(b, "epoch-0001.safetensors"));
        Assert.True(Same(stateB["fc1.weight"], stateA["fc1.weight"]), "the frozen layer changed");
        Assert.True(Same(stateB["fc1.bias"], stateA["fc1.bias"]));
        Assert.False(Same(stateB["fc2.weight"], stateA["fc2.weight"]), "the trainable layer did not train");
        var cp = Checkpoint.Open(Path.Combine(b, "epoch-0001.safetensors"));
        Assert.Equal(Path.GetFullPath(bare), cp.Info.Training!.InitFile);
        Assert.Equal(Checkpoint.HashFile(bare), cp.Info.Training.InitHash);
        Assert.Equal(new[] { "fc1" }, cp.Info.Training.Freeze);
        Assert.Equal(new[] { "fc1" }, RunRecord.TryRead(b)!.Training.Freeze);
        Assert.Null(cp.Info.InitSkipped);
        Assert.Equal(new[] { "fc2" }, TrackedLayer.Find(cp.LoadModel()).Select(l => l.Name));
        // Attribution on the run uses the trainable layer only, and works.
        r = Run("detect-mislabeled", "--run", b, "--methods", "identity", "--quiet");
        Assert.True(r.Code == 0, r.Err);

        // Refusals: an unknown prefix (runtime, exit 1, one line), --pretrained with another model (usage, exit 2).
        r = Run(new[] { "train", "--model", "mlp", "--widths", "16", "--out", dir.File("c"), "--freeze", "layer9" }.Concat(Small).ToArray());
        Assert.Equal(1, r.Code); Assert.Contains("--freeze layer9", r.Err);
        r = Run(new[] { "train", "--model", "smallcnn", "--out", dir.File("c"), "--pretrained", "imagenet" }.Concat(Small).ToArray());
        Assert.Equal(2, r.Code); Assert.Contains("--pretrained", r.Err);
    }

    /// <summary>Init from weights for another class count: the head starts fresh and the run says so;
    /// any other shape mismatch is an error naming the parameter. A PyTorch state dict (.pt, written in
    /// PyTorch's zip pickle format by TorchSharp.PyBridge) loads to the same weights.</summary>
    [Fact]
    public void HeadOfAnotherClassCountStartsFreshOtherMismatchesAreErrors()
    {
        using var dir = new TempDir();
        using var scope = NewDisposeScope();
        torch.manual_seed(TestSeed.For());
        var five = ModelSpec.For("mlp", 1, 28, 28, 5, new[] { 16 }).Create();
        string fivePath = dir.File("five.safetensors");
        SafeTensors.Save(fivePath, five.state_dict());
        var ten = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 16 }).Create();
        var init = InitWeights.Apply(ten, fivePath);
        Assert.Equal(new[] { "fc2.weight", "fc2.bias" }, init.Skipped);
        Assert.True(Same(ten.state_dict()["fc1.weight"], five.state_dict()["fc1.weight"]));
        // Import takes the weights as the model: no head may be skipped there.
        Assert.Contains("fc2.weight", Assert.Throws<InfluenceSharpException>(() => InitWeights.Apply(ten, fivePath, strictHead: true)).Message);
        var wide = ModelSpec.For("mlp", 1, 28, 28, 10, new[] { 17 }).Create();
        var e = Assert.Throws<InfluenceSharpException>(() => InitWeights.Apply(wide, fivePath));
        Assert.Contains("'fc1.weight' is [16,784] in the file, [17,784] in the model", e.Message);

        // The skip is recorded in the run.
        var r = Run(new[] { "train", "--model", "mlp", "--widths", "16", "--out", dir.File("run"), "--init", fivePath }.Concat(Small).ToArray());
        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(new[] { "fc2.weight", "fc2.bias" }, RunRecord.TryRead(dir.File("run"))!.InitSkipped);
        Assert.Equal(new[] { "fc2.weight", "fc2.bias" }, Checkpoint.Open(Path.Combine(dir.File("run"), "epoch-0001.safetensors")).Info.InitSkipped);

        // PyTorch's format.
        string pt = dir.File("five.pt");
        five.save_py(pt);
        var again = ModelSpec.For("mlp", 1, 28, 28, 5, new[] { 16 }).Create();
        Assert.Empty(InitWeights.Apply(again, pt).Skipped);
        foreach (var (name, t) in five.state_dict())
            Assert.True(Same(again.state_dict()[name], t), name);
    }

    /// <summary>`influence import` of a bare safetensors and a PyTorch .pt as two checkpoints with their
    /// step sizes, then mislabel detection with identity and TracIn on the imported run.</summary>
    [Fact]
    public void ImportedRunWorksWithEveryCommand()
    {
        using var dir = new TempDir();
        string src = dir.File("src"), run = dir.File("run");
        var r = Run(new[] { "train", "--model", "smallcnn", "--out", src, "--epochs", "2" }.Concat(Small.Where((_, i) => i < 4)).Append("--quiet").ToArray());
        Assert.True(r.Code == 0, r.Err);
        // The first as a bare safetensors, the second as a PyTorch state dict.
        string bare = dir.File("e1.safetensors"), pt = dir.File("e2.pt");
        SafeTensors.Save(bare, StateOf(Path.Combine(src, "epoch-0001.safetensors")));
        var second = Checkpoint.Open(Path.Combine(src, "epoch-0002.safetensors")).LoadModel();
        second.save_py(pt);

        r = Run("import", "--model", "smallcnn", "--weights", $"{bare},{pt}", "--lr", "0.1,0.05", "--data", "embedded", "--train-count", "100", "--out", run, "--quiet");
        Assert.True(r.Code == 0, r.Err);
        var record = RunRecord.TryRead(run)!;
        Assert.True(record.IsCompleteIn(run));
        Assert.Equal(new[] { "epoch-0001.safetensors", "epoch-0002.safetensors" }, record.Checkpoints);
        var cps = Checkpoint.List(run);
        Assert.Equal(new[] { 0.1, 0.05 }, cps.Select(c => c.Info.LearningRate));
        Assert.Equal(Checkpoint.HashFile(pt), cps[1].Info.ImportedHash);
        Assert.Equal(Checkpoint.Open(Path.Combine(src, "epoch-0001.safetensors")).Info.DataFingerprint, cps[0].Info.DataFingerprint);
        // The imported weights are the trained ones.
        Assert.Equal(ModelFingerprint.Of(second), ModelFingerprint.Of(cps[1].LoadModel()));

        r = Run("detect-mislabeled", "--run", run, "--methods", "identity,tracin", "--quiet");
        Assert.True(r.Code == 0, r.Err);
        Assert.True(Directory.Exists(Path.Combine(run, "detect")));

        // Usage and runtime refusals.
        r = Run("import", "--model", "smallcnn", "--weights", $"{bare},{pt}", "--lr", "0.1,0.05,0.01", "--data", "embedded", "--out", dir.File("x"));
        Assert.Equal(2, r.Code); Assert.Contains("--lr", r.Err);
        r = Run("import", "--model", "mlp", "--weights", bare, "--data", "embedded", "--out", dir.File("y"));
        Assert.True(r.Code == 1, r.Err); Assert.Contains("conv1.weight", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
    }

    /// <summary>`--model path/to/Assembly.dll:Namespace.Type`: a user's module (a constructor taking the
    /// class count, or a static Create) trains, and attribution runs on it.</summary>
    [Fact]
    public void UserModuleFromAnAssemblyTrainsAndIsAttributed()
    {
        using var dir = new TempDir();
        string asm = typeof(TinyUserNet).Assembly.Location;
        string run = dir.File("run");
        var r = Run(new[] { "train", "--model", $"{asm}:{typeof(TinyUserNet).FullName}", "--out", run }.Concat(Small).ToArray());
        Assert.True(r.Code == 0, r.Err);
        var cp = Checkpoint.Open(Path.Combine(run, "epoch-0001.safetensors"));
        Assert.Equal($"{asm}:{typeof(TinyUserNet).FullName}", cp.Info.Model.Architecture);
        Assert.Equal(new[] { "hidden", "head" }, TrackedLayer.Find(cp.LoadModel()).Select(l => l.Name));
        r = Run("detect-mislabeled", "--run", run, "--methods", "identity,tracin", "--quiet");
        Assert.True(r.Code == 0, r.Err);

        r = Run(new[] { "train", "--model", $"{asm}:{typeof(TinyUserFactory).FullName}", "--out", dir.File("f") }.Concat(Small).ToArray());
        Assert.True(r.Code == 0, r.Err);

        r = Run(new[] { "train", "--model", $"{asm}:No.Such.Type", "--out", dir.File("x") }.Concat(Small).ToArray());
        Assert.Equal(1, r.Code); Assert.Contains("No.Such.Type", r.Err);
        r = Run(new[] { "train", "--model", $"{dir.File("missing.dll")}:A.B", "--out", dir.File("x") }.Concat(Small).ToArray());
        Assert.Equal(2, r.Code); Assert.Contains("--model", r.Err);
        r = Run(new[] { "train", "--model", "resnet50", "--out", dir.File("x") }.Concat(Small).ToArray());
        Assert.Equal(2, r.Code); Assert.Contains("--model resnet50", r.Err);
    }
}
