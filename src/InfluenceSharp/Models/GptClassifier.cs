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
        using (no_grad())
        {
            foreach (var (name, p) in named_parameters())
                if (name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains("ln_", StringComparison.Ordinal)) p.zero_();
                else if (!name.Contains("ln_", StringComparison.Ordinal)) init.normal_(p, 0, 0.02);
        }
    }

    public GptOptions Options { get; }
    public int Classes { get; }
    /// <summary>The padding id (the last of the vocabulary).</summary>
    public long PadId => Options.Vocabulary - 1;

    public override Tensor forward(Tensor tokens)
    {
        if (tokens.dim() != 2) throw new InfluenceSharpException($"gpt classifier: expects token ids [batch, tokens], got [{string.Join(", ", tokens.shape)}]");
        long b = tokens.shape[0], t = tokens.shape[1];
        if (t > Options.Context) throw new InfluenceSharpException($"gpt classifier: {t} tokens exceed the context of {Options.Context}");
        var positions = torch.arange(t, dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0).expand(b, t);
        var x = wte.call(tokens) + wpe.call(positions);
        foreach (var block in h) x = block.call(x);
        x = ln_f.call(x);
        using var pad = PadId.ToScalar();
        var keep = tokens.ne(pad).to(x.dtype).unsqueeze(2);                 // [B, T, 1]
        using var one = 1.0.ToScalar();
        var count = keep.sum(1).clamp_min(one);                             // an all-padding text pools to 0
        return head.call(x.mul(keep).sum(1).div(count));
    }
}
