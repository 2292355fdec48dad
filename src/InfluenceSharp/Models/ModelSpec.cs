using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Models;

/// <summary>What architecture a checkpoint holds and its options. Stored in every checkpoint
/// sidecar so that a checkpoint can be rebuilt, and refused by a model of another shape.</summary>
public sealed record ModelSpec(string Architecture, int InChannels, int Height, int Width, int NumClasses, int[]? HiddenWidths = null)
{
    public static readonly string[] Architectures = { "logreg", "mlp", "smallcnn", "resnet9", "resnet18", "tabular-mlp", "gpt" };

    /// <summary>The ImageNet ResNet-18 as its weights were trained (<see cref="ResNet18.ImageNet"/>):
    /// what <c>--model resnet18 --pretrained imagenet</c> builds. Not a <c>--model</c> choice of its own:
    /// it needs the converted weights and the input transform they carry.</summary>
    public const string ImageNetResNet18 = "resnet18-imagenet";

    /// <summary>What <c>--model gpt</c> builds on text-classes data: <see cref="GptClassifier"/>. Not a
    /// <c>--model</c> choice of its own: the data decide between the language model and the classifier.</summary>
    public const string TextClassifier = "gpt-classifier";

    /// <summary>The token ids a text model embeds (<see cref="GptClassifier"/>: the tokenizer's and the
    /// padding id); null for other models.</summary>
    public int? Vocabulary { get; init; }

    /// <summary>What the model does to its inputs before the first layer, in words, when that is part
    /// of the model (the ImageNet ResNet-18's input transform); null otherwise.</summary>
    public string? Preprocessing { get; init; }

    /// <summary>tabular-mlp's hidden width unless --widths says otherwise.</summary>
    public const int TabularHiddenWidth = 64;

    /// <summary>Smallest input height and width resnet18 takes (five stride-2 stages).</summary>
    public const int ResNet18MinSize = 32;

    /// <summary>A spec for a built-in architecture, or for a user's module given as
    /// <c>path/to/Assembly.dll:Namespace.Type</c> (see <see cref="CustomModel"/>).</summary>
    public static ModelSpec For(string architecture, int inChannels, int height, int width, int numClasses, int[]? widths = null)
    {
        if (CustomModel.IsCustom(architecture))
        {
            var custom = CustomModel.Parse(architecture, "--model");
            return new ModelSpec(custom.ToString(), inChannels, height, width, numClasses, null);
        }
        architecture = architecture.ToLowerInvariant();
        if (!Architectures.Contains(architecture))
            throw new InfluenceSharpException($"--model {architecture}: unknown architecture (choose {string.Join(", ", Architectures)}, or path/to/Models.dll:Namespace.Type)");
        if (architecture == "resnet18" && (height < ResNet18MinSize || width < ResNet18MinSize))
            throw new InfluenceSharpException($"--model resnet18: inputs are {height}x{width}; resnet18 needs at least {ResNet18MinSize}x{ResNet18MinSize}");
        if (architecture == "mlp") widths ??= new[] { 128 };
        else if (architecture == "tabular-mlp")
        {
            widths ??= new[] { TabularHiddenWidth };
            if (widths.Length != 1) throw new InfluenceSharpException($"--widths {string.Join(",", widths)}: tabular-mlp has one hidden layer (Linear-ReLU-Linear): give one width");
        }
        else if (architecture == "gpt") widths = GptWidths(widths);
        else widths = null;
        return new ModelSpec(architecture, inChannels, height, width, numClasses, widths);
    }

    /// <summary>The spec of <c>--model gpt</c> on text classification data: <paramref name="vocabulary"/> ids
    /// (padding included), <paramref name="sequenceLength"/> tokens, <paramref name="classes"/> outputs.</summary>
    public static ModelSpec ForTextClasses(int vocabulary, int sequenceLength, int classes, int[]? widths) =>
        new(TextClassifier, 1, 1, sequenceLength, classes, GptWidths(widths)) { Vocabulary = vocabulary };

    /// <summary>Refuses a spec no model can be built from (e.g. a hand-edited sidecar with
    /// num_classes: -3), naming <paramref name="source"/> and the field.</summary>
    public void Validate(string source)
    {
        void Check(bool ok, string what)
        {
            if (!ok) throw new InfluenceSharpException($"{source}: invalid model spec: {what}");
        }
        Check(Architecture is not null && (Architectures.Contains(Architecture) || Architecture is ImageNetResNet18 or TextClassifier || CustomModel.IsCustom(Architecture)), $"architecture '{Architecture}' (choose {string.Join(", ", Architectures)}, or path/to/Models.dll:Namespace.Type)");
        Check(NumClasses >= 2 && NumClasses <= 1_000_000, $"num_classes {NumClasses} (at least 2)");
        Check(InChannels >= 1 && InChannels <= 4096, $"in_channels {InChannels} (at least 1)");
        Check(Height >= 1 && Height <= 65536, $"height {Height} (at least 1)");
        Check(Width >= 1 && Width <= 65536, $"width {Width} (at least 1)");
        Check((long)InChannels * Height * Width <= int.MaxValue, $"{InChannels}x{Height}x{Width} inputs: too many");
        if (Architecture == ImageNetResNet18) Check(InChannels is 1 or 3, $"in_channels {InChannels} (the ImageNet ResNet-18 takes 1 or 3)");
        if (Architecture == "tabular-mlp") Check(HiddenWidths is null || HiddenWidths.Length == 1, "tabular-mlp has one hidden width");
        if (Architecture is "gpt" or TextClassifier) Check(HiddenWidths is { Length: 3 } g && g.All(w => w >= 1 && w <= 65536) && g[0] % g[2] == 0, "gpt needs hidden_widths [width, blocks, heads] (width divisible by heads)");
        if (Architecture == TextClassifier) Check(Vocabulary is >= 2 and <= 10_000_000, $"vocabulary {Vocabulary?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "missing"} (the gpt classifier needs the token ids it embeds, at least 2)");
        if (Architecture is "mlp" or "tabular-mlp") Check(HiddenWidths is null || HiddenWidths.All(w => w >= 1 && w <= 65536), $"hidden_widths {string.Join(",", HiddenWidths ?? Array.Empty<int>())} (each between 1 and 65536)");
    }

    /// <summary>Builds a freshly initialised model (uses torch's global generator: seed it first).</summary>
    public Module<Tensor, Tensor> Create() => Architecture switch
    {
        "logreg" => new LogisticRegression(InChannels * Height * Width, NumClasses),
        "mlp" => new Mlp(InChannels * Height * Width, HiddenWidths ?? new[] { 128 }, NumClasses),
        // Linear-ReLU-Linear over the D features of tabular data (fc1, fc2).
        "tabular-mlp" => new Mlp(InChannels * Height * Width, HiddenWidths ?? new[] { TabularHiddenWidth }, NumClasses),
        // A decoder-only transformer over token ids: NumClasses is the vocabulary, Width the context.
        "gpt" => new Gpt(new GptOptions(NumClasses, Width, HiddenWidths![0], HiddenWidths[1], HiddenWidths[2])),
        // Mean-pooled GPT encoder into a class head; Width is the context, the last id padding.
        TextClassifier => new GptClassifier(new GptOptions(Vocabulary!.Value, Width, HiddenWidths![0], HiddenWidths[1], HiddenWidths[2]), NumClasses),
        "smallcnn" => new SmallCnn(InChannels, Height, Width, NumClasses),
        "resnet9" => ResNet9.Create(InChannels, NumClasses),
        "resnet18" => new ResNet18(InChannels, NumClasses),
        ImageNetResNet18 => ResNet18.ImageNet(InChannels, Height, Width, NumClasses),
        _ when CustomModel.IsCustom(Architecture) => CustomModel.Parse(Architecture, "model").Create(NumClasses),
        _ => throw new InfluenceSharpException($"unknown architecture '{Architecture}'"),
    };

    /// <summary>The name of the classifier head's parameters' module: <c>fc</c> for resnet18 and
    /// logreg, the last Linear layer otherwise (null when the model has none).</summary>
    public static string? HeadOf(nn.Module model)
    {
        // By the parameters' order: named_modules() lists a module's own leaves before its
        // containers' (a transformer's head before its blocks).
        var linears = model.named_modules().Where(m => m.module is Linear).Select(m => m.name).ToHashSet();
        return model.named_parameters().Select(p => p.name).Where(n => n.EndsWith(".weight", StringComparison.Ordinal))
            .Select(n => n[..^".weight".Length]).LastOrDefault(linears.Contains);
    }

    /// <summary>gpt's --widths: width, blocks, heads (default 64,2,4).</summary>
    static int[] GptWidths(int[]? widths)
    {
        widths ??= new[] { 64, 2, 4 };
        if (widths.Length != 3 || widths.Any(w => w < 1) || widths[0] % widths[2] != 0)
            throw new InfluenceSharpException($"--widths {string.Join(",", widths)}: gpt takes WIDTH,BLOCKS,HEADS (e.g. 64,2,4; the width divisible by the heads)");
        return widths;
    }

    public string Describe() => Architecture switch
    {
        "mlp" or "tabular-mlp" => $"{Architecture} {InChannels * Height * Width}-{string.Join("-", HiddenWidths ?? Array.Empty<int>())}-{NumClasses}",
        TextClassifier => $"gpt classifier (width {HiddenWidths![0]}, {HiddenWidths[1]} blocks, {HiddenWidths[2]} heads; {Width} tokens of {Vocabulary} ids, mean-pooled -> {NumClasses} classes)",
        _ => $"{Architecture} ({InChannels}x{Height}x{Width} -> {NumClasses})",
    };
}

/// <summary>Multinomial logistic regression: flatten, one Linear layer ("fc").</summary>
public sealed class LogisticRegression : Module<Tensor, Tensor>
{
    private readonly Linear fc;

    public LogisticRegression(int inputs, int classes) : base(nameof(LogisticRegression))
    {
        fc = Linear(inputs, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc.call(x.flatten(1));
}

/// <summary>Fully connected ReLU network; layers are fc1..fcN (PyTorch names fc1.weight, ...).</summary>
public sealed class Mlp : Module<Tensor, Tensor>
{
    private readonly List<Linear> layers = new();

    public Mlp(int inputs, int[] widths, int classes) : base(nameof(Mlp))
    {
        int prev = inputs;
        var sizes = widths.Append(classes).ToArray();
        for (int i = 0; i < sizes.Length; i++)
        {
            var l = Linear(prev, sizes[i]);
            layers.Add(l);
            register_module($"fc{i + 1}", l);
            prev = sizes[i];
        }
    }

    public override Tensor forward(Tensor x)
    {
        x = x.flatten(1);
        for (int i = 0; i < layers.Count; i++)
        {
            x = layers[i].call(x);
            if (i < layers.Count - 1) x = functional.relu(x);
        }
        return x;
    }
}

/// <summary>A small CNN for 28×28 inputs: conv1(16, 3×3) → pool → conv2(32, 3×3) → pool → fc1(128) → fc2.</summary>
public sealed class SmallCnn : Module<Tensor, Tensor>
{
    private readonly Conv2d conv1, conv2;
    private readonly Linear fc1, fc2;

    public SmallCnn(int channels, int height, int width, int classes) : base(nameof(SmallCnn))
    {
        conv1 = Conv2d(channels, 16, 3, padding: 1);
        conv2 = Conv2d(16, 32, 3, padding: 1);
        fc1 = Linear(32 * (height / 4) * (width / 4), 128);
        fc2 = Linear(128, classes);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        // Channels-last throughout: the same values, but libtorch's CPU max-pooling is ~7× faster on
        // NHWC than on NCHW, and the convolutions and their gradients follow the input's layout.
        // ReLU after pooling: relu and max commute, so values and gradients are those of
        // pool(relu(·)) (up to exact ties), with the ReLU on a quarter of the elements.
        x = functional.relu(functional.max_pool2d(conv1.call(ChannelsLast(x)), 2));
        x = functional.relu(functional.max_pool2d(conv2.call(x), 2));
        x = functional.relu(fc1.call(x.flatten(1)));
        return fc2.call(x);
    }

    /// <summary>The same tensor with NHWC strides (TorchSharp has no memory_format argument). With one
    /// channel the memory is already NHWC and only the strides say so (libtorch reads a size-1 dim's
    /// stride to pick the layout, and contiguous() leaves it as it was).</summary>
    private static Tensor ChannelsLast(Tensor x)
    {
        if (x.shape[1] != 1) return x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        long h = x.shape[2], w = x.shape[3];
        return x.contiguous().as_strided(x.shape, new[] { h * w, 1, w, 1 });
    }
}

/// <summary>The ResNet-9 of the TRAK and Kronfluence CIFAR-10 examples, with the same module tree
/// and therefore the same PyTorch parameter names ("0.0.weight", "2.module.0.1.running_mean", "9.weight").</summary>
public static class ResNet9
{
    public static Module<Tensor, Tensor> Create(int inChannels, int classes)
    {
        return Sequential(
            ("0", ConvBn(inChannels, 64, 3, 1, 1)),
            ("1", ConvBn(64, 128, 5, 2, 2)),
            ("2", new Residual(Sequential(("0", ConvBn(128, 128)), ("1", ConvBn(128, 128))))),
            ("3", ConvBn(128, 256)),
            ("4", MaxPool2d(2)),
            ("5", new Residual(Sequential(("0", ConvBn(256, 256)), ("1", ConvBn(256, 256))))),
            ("6", ConvBn(256, 128, 3, 1, 0)),
            ("7", AdaptiveMaxPool2d(new long[] { 1, 1 })),
            ("8", Flatten()),
            ("9", Linear(128, classes, hasBias: false)),
            ("10", new Scale(0.2)));
    }

    static Module<Tensor, Tensor> ConvBn(int cin, int cout, int kernel = 3, int stride = 1, int padding = 1) =>
        Sequential(("0", Conv2d(cin, cout, kernel, stride: stride, padding: padding, bias: false)),
                   ("1", BatchNorm2d(cout)),
                   ("2", ReLU()));

    sealed class Residual : Module<Tensor, Tensor>
    {
        private readonly Module<Tensor, Tensor> module;

        public Residual(Module<Tensor, Tensor> inner) : base(nameof(Residual))
        {
            module = inner;
            RegisterComponents();
        }

        public override Tensor forward(Tensor x) => x + module.call(x);
    }

    sealed class Scale : Module<Tensor, Tensor>
    {
        private readonly double factor;
        public Scale(double factor) : base(nameof(Scale)) { this.factor = factor; }
        public override Tensor forward(Tensor x) => x.mul(factor);
    }
}
