using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Models;

/// <summary>
/// torchvision's ResNet-18 (He et al. 2016) with torchvision's module tree and therefore its
/// parameter names (<c>conv1.weight</c>, <c>bn1.running_mean</c>, <c>layer1.0.conv1.weight</c>,
/// <c>layer2.0.downsample.0.weight</c>, <c>fc.weight</c>, ...): a state dict saved by
/// <c>torchvision.models.resnet18(num_classes=N)</c> loads into it unchanged. Written here rather
/// than taken from the TorchVision package so that every Conv2d and Linear is invoked with
/// <c>.call</c> (forward hooks, which attribution relies on, fire only then). Any number of
/// classes, 1 or 3 (or more) input channels, any input size (global average pooling).
/// </summary>
public sealed class ResNet18 : Module<Tensor, Tensor>, IStagedModel
{
    // Declared first: its buffers lead the state dict (input.scale, input.shift).
    private readonly ImageNetInput? input;
    private readonly Conv2d conv1;
    private readonly BatchNorm2d bn1;
    private readonly Sequential layer1, layer2, layer3, layer4;
    private readonly Linear fc;
    private readonly long[]? stemPad, poolPad;
    private readonly Module<Tensor, Tensor>[] blocks;
    private readonly (Sequential Layer, int First, int Count)[] layerSpans;   // stage index of each layer's first block
    private readonly ModelStage[] stages;

    /// <param name="inChannels">Input channels (3 for RGB, 1 for grey).</param>
    /// <param name="numClasses">Outputs of the classifier head <c>fc</c>.</param>
    public ResNet18(int inChannels, int numClasses) : this(inChannels, numClasses, false) { }

    /// <param name="inChannels">Input channels.</param>
    /// <param name="numClasses">Outputs of <c>fc</c>.</param>
    /// <param name="cntkVariant">The network of the CNTK ImageNet "ResNet18" export that
    /// <see cref="Pretrained"/> converts, which differs from torchvision's in two ways: it pads
    /// asymmetrically (stem convolution [top 3, left 3, bottom 2, right 2], max-pool and the strided
    /// 3×3 convolutions [1, 1, 0, 0]) and its layer4 has three blocks (layer4.2 extra). With it, the
    /// converted weights give that model's outputs exactly.</param>
    public ResNet18(int inChannels, int numClasses, bool cntkVariant) : this(inChannels, numClasses, cntkVariant, null) { }

    ResNet18(int inChannels, int numClasses, bool cntkVariant, ImageNetInput? input) : base("ResNet")
    {
        this.input = input;
        bool cntkPadding = cntkVariant;
        conv1 = Conv2d(inChannels, 64, 7, stride: 2, padding: cntkPadding ? 0 : 3, bias: false);
        bn1 = BatchNorm2d(64);
        layer1 = Layer(64, 64, 1, 2, cntkPadding);
        layer2 = Layer(64, 128, 2, 2, cntkPadding);
        layer3 = Layer(128, 256, 2, 2, cntkPadding);
        layer4 = Layer(256, 512, 2, cntkVariant ? 3 : 2, cntkPadding);
        fc = Linear(512, numClasses);
        if (cntkPadding) { stemPad = new long[] { 3, 2, 3, 2 }; poolPad = new long[] { 1, 0, 1, 0 }; }
        RegisterComponents();
        var layers = new[] { ("layer1", layer1), ("layer2", layer2), ("layer3", layer3), ("layer4", layer4) };
        blocks = layers.SelectMany(l => l.Item2.children().Cast<Module<Tensor, Tensor>>()).ToArray();
        layerSpans = new (Sequential, int, int)[layers.Length];
        for (int i = 0, first = 2; i < layers.Length; first += layerSpans[i].Count, i++) layerSpans[i] = (layers[i].Item2, first, layers[i].Item2.children().Count());
        stages = new[] { new ModelStage("input", new[] { "input" }), new ModelStage("stem", new[] { "conv1", "bn1" }) }
            .Concat(layers.SelectMany(l => Enumerable.Range(0, l.Item2.children().Count()).Select(b =>
            {
                string name = $"{l.Item1}.{b.ToString(System.Globalization.CultureInfo.InvariantCulture)}";
                return new ModelStage(name, new[] { name });
            })))
            .Append(new ModelStage("head", new[] { "fc" })).ToArray();
        StageSignature = $"resnet18(in {inChannels}, layer4 blocks {(cntkVariant ? 3 : 2)}, padding {(cntkPadding ? "cntk" : "torchvision")}, input transform {(input is null ? "none" : "imagenet")})";
        // torchvision's initialisation: He (fan-out) for convolutions, BatchNorm scale 1 and shift 0.
        using (no_grad())
            foreach (var (_, m) in named_modules())
                if (m is Conv2d c) init.kaiming_normal_(c.weight!, mode: init.FanInOut.FanOut, nonlinearity: init.NonlinearityType.ReLU);
    }

    /// <summary>The CNTK ImageNet network (see <see cref="ResNet18(int, int, bool)"/>) behind an
    /// <see cref="ImageNetInput"/> that turns the data set's normalised inputs of
    /// <paramref name="inChannels"/> channels (1: grey, replicated to R, G, B; or 3: RGB) and
    /// <paramref name="height"/> x <paramref name="width"/> into what the ImageNet weights expect.
    /// The transform starts as the identity; the converted weights file sets it
    /// (<see cref="Pretrained.ImageNetResNet18"/>).</summary>
    public static ResNet18 ImageNet(int inChannels, int height, int width, int numClasses)
    {
        if (inChannels is not (1 or 3)) throw new InfluenceSharpException($"resnet18 with ImageNet weights: the inputs have {inChannels} channels; the ImageNet weights take 3 (RGB) or 1 (grey, replicated to RGB)");
        return new ResNet18(3, numClasses, true, new ImageNetInput(inChannels, height, width));
    }

    static Sequential Layer(int cin, int cout, int stride, int blocks, bool cntkPadding) =>
        Sequential(Enumerable.Range(0, blocks).Select(b =>
            (b.ToString(System.Globalization.CultureInfo.InvariantCulture), (Module<Tensor, Tensor>)new BasicBlock(b == 0 ? cin : cout, cout, b == 0 ? stride : 1, cntkPadding))).ToArray());

    /// <summary>The 512 features after global average pooling (the input of <c>fc</c>).</summary>
    public Tensor Features(Tensor x) => Pool(ForwardStages(x, 0, stages.Length - 1));

    static Tensor Pool(Tensor x) => functional.adaptive_avg_pool2d(x, new long[] { 1, 1 }).flatten(1);

    /// <summary>Stages: the input transform ("input", the identity without one), the stem (conv1,
    /// bn1, ReLU, max-pool), each residual block ("layer1.0" ... "layer4.1", or "layer4.2"), and the
    /// head (pooling and fc).</summary>
    public IReadOnlyList<ModelStage> Stages => stages;

    public string StageSignature { get; }

    public Tensor ForwardStages(Tensor x, int from, int to)
    {
        if (from < 0 || to > stages.Length || from > to) throw new ArgumentOutOfRangeException(nameof(from), $"stages [{from}, {to}) of {stages.Length}");
        for (int s = from; s < to; s++)
        {
            if (s == 0) { if (input is not null) x = input.call(x); }
            else if (s == 1)
            {
                // pad order for functional.pad: (left, right, top, bottom)
                if (stemPad is not null) x = functional.pad(x, stemPad);
                x = functional.relu(bn1.call(conv1.call(x)));
                // Zero padding before the max-pool is exact here: its input is a ReLU output (≥ 0).
                x = poolPad is not null ? functional.max_pool2d(functional.pad(x, poolPad), 3, 2)
                                        : functional.max_pool2d(x, 3, 2, 1);
            }
            else if (s == stages.Length - 1) x = fc.call(Pool(x));
            else if (Array.FindIndex(layerSpans, l => l.First == s && s + l.Count <= to) is var whole and >= 0)
            {
                // A whole layer runs through its Sequential, so that hooks on layerN fire as in torchvision.
                x = layerSpans[whole].Layer.call(x);
                s += layerSpans[whole].Count - 1;
            }
            else x = blocks[s - 2].call(x);
        }
        return x;
    }

    public override Tensor forward(Tensor x) => ForwardStages(x, 0, stages.Length);

    /// <summary>The fixed first step of the ImageNet network: x ↦ x · scale + shift per channel and
    /// pixel, after replicating a grey input to three channels. No parameters (nothing to train or to
    /// attribute); the two buffers travel in the state dict, so every checkpoint carries the
    /// preprocessing its weights expect.</summary>
    public sealed class ImageNetInput : Module<Tensor, Tensor>
    {
        private readonly int inChannels;

        public ImageNetInput(int inChannels, int height, int width) : base(nameof(ImageNetInput))
        {
            this.inChannels = inChannels;
            register_buffer("scale", ones(1, 3, 1, 1));
            register_buffer("shift", zeros(1, 3, height, width));
        }

        public override Tensor forward(Tensor x)
        {
            if (x.shape.Length != 4 || x.shape[1] != inChannels)
                throw new InfluenceSharpException($"resnet18 with ImageNet weights: inputs are [{string.Join(",", x.shape)}], expected [N,{inChannels},H,W]");
            var scale = get_buffer("scale")!;
            var shift = get_buffer("shift")!;
            if (inChannels == 1) x = x.expand(x.shape[0], 3, x.shape[2], x.shape[3]);
            // Not x * scale + shift: Tensor + Tensor passes an implicit Scalar alpha that the garbage
            // collector can finalise while libtorch reads it ("Expected false to be true" from
            // Scalar::toFloat, seen in a 32,000-image detect-mislabeled run).
            using var one = 1.0.ToScalar();
            return x.mul(scale).add(shift, one);
        }
    }

    /// <summary>torchvision's BasicBlock: conv1/bn1/relu/conv2/bn2, plus the identity or a 1×1
    /// strided "downsample" (conv + BatchNorm) when the shape changes, then ReLU.</summary>
    sealed class BasicBlock : Module<Tensor, Tensor>
    {
        // Declared in torchvision's order: RegisterComponents registers fields in declaration order,
        // which is the order of named_parameters() and of the state dict.
        private readonly Conv2d conv1;
        private readonly BatchNorm2d bn1;
        private readonly Conv2d conv2;
        private readonly BatchNorm2d bn2;
        private readonly Sequential? downsample;
        private readonly long[]? pad1;

        public BasicBlock(int cin, int cout, int stride, bool cntkPadding) : base(nameof(BasicBlock))
        {
            bool asymmetric = cntkPadding && stride != 1;
            conv1 = Conv2d(cin, cout, 3, stride: stride, padding: asymmetric ? 0 : 1, bias: false);
            if (asymmetric) pad1 = new long[] { 1, 0, 1, 0 };
            bn1 = BatchNorm2d(cout);
            conv2 = Conv2d(cout, cout, 3, stride: 1, padding: 1, bias: false);
            bn2 = BatchNorm2d(cout);
            if (stride != 1 || cin != cout)
                downsample = Sequential(("0", Conv2d(cin, cout, 1, stride: stride, bias: false)), ("1", BatchNorm2d(cout)));
            RegisterComponents();
        }

        public override Tensor forward(Tensor x)
        {
            var h = functional.relu(bn1.call(conv1.call(pad1 is null ? x : functional.pad(x, pad1))));
            h = bn2.call(conv2.call(h));
            var identity = downsample is null ? x : downsample.call(x);
            return functional.relu(h + identity);
        }
    }
}
