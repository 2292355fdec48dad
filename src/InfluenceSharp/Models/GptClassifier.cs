using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Models;

/// <summary>
/// A text classifier built on <see cref="Gpt"/>'s encoder: token and position embeddings (<c>wte</c>,
/// <c>wpe</c>), the same causal pre-LayerNorm blocks <c>h.i</c> and final LayerNorm <c>ln_f</c>, then the
/// mean of the final hidden states over the non-padding tokens into a Linear <c>head</c> with one output
/// per class. Takes token ids [B, T] in [0, vocabulary), where id vocabulary − 1 is padding (on the
/// right; causal attention keeps it from the real tokens, and the mean leaves it out), and returns
/// logits [B, K]. Every projection is an nn.Linear; no dropout.
/// </summary>
public sealed class GptClassifier : Module<Tensor, Tensor>, ISequenceModel
{
    private readonly Embedding wte, wpe;
    private readonly ModuleList<GptBlock> h;
    private readonly LayerNorm ln_f;
    private readonly Linear head;

    /// <param name="options">Sizes; its vocabulary counts the padding id (the last).</param>
    /// <param name="classes">Outputs of the head.</param>
    public GptClassifier(GptOptions options, int classes) : base(nameof(GptClassifier))
    {
        options.Validate();
        if (classes < 2) throw new InfluenceSharpException($"gpt classifier: {classes} classes: at least 2");
        Options = options; Classes = classes;
        wte = Embedding(options.Vocabulary, options.Embedding);
        wpe = Embedding(options.Context, options.Embedding);
        h = new ModuleList<GptBlock>(Enumerable.Range(0, options.Layers).Select(_ => new GptBlock(options.Embedding, options.Heads)).ToArray());
        ln_f = LayerNorm(options.Embedding);
        head = Linear(options.Embedding, classes);
        RegisterComponents();
        Gpt.InitialiseLikeGpt2(this);
    }

    public GptOptions Options { get; }
    public int Classes { get; }
    /// <summary>The padding id (the last of the vocabulary).</summary>
    public long PadId => Options.Vocabulary - 1;

    public override Tensor forward(Tensor tokens)
    {
        var x = ln_f.call(Gpt.Encode(tokens, Options, wte, wpe, h, "gpt classifier"));
        using var pad = PadId.ToScalar();
        var keep = tokens.ne(pad).to(x.dtype).unsqueeze(2);                 // [B, T, 1]
        using var one = 1.0.ToScalar();
        var count = keep.sum(1).clamp_min(one);                             // an all-padding text pools to 0
        return head.call(x.mul(keep).sum(1).div(count));
    }
}
