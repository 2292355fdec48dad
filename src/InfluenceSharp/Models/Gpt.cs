using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace InfluenceSharp.Models;

/// <summary>A model that applies its layers at several positions of each example (a transformer over
/// tokens): every tracked layer's per-example gradient sums over positions, so no layer's is rank one.</summary>
public interface ISequenceModel
{
}

/// <summary>The sizes of a <see cref="Gpt"/>: vocabulary, context length (positions), embedding
/// width, blocks and attention heads; the MLP's hidden width is 4 × embedding.</summary>
public sealed record GptOptions(int Vocabulary, int Context, int Embedding = 64, int Layers = 2, int Heads = 4)
{
    /// <summary>Refuses sizes no model can be built with, naming the option.</summary>
    public void Validate()
    {
        if (Vocabulary < 2) throw new InfluenceSharpException($"gpt: vocabulary {Vocabulary}: at least 2");
        if (Context < 1) throw new InfluenceSharpException($"gpt: context {Context}: at least 1");
        if (Embedding < 1 || Layers < 1 || Heads < 1) throw new InfluenceSharpException($"gpt: width {Embedding}, layers {Layers}, heads {Heads}: each at least 1");
        if (Embedding % Heads != 0) throw new InfluenceSharpException($"gpt: width {Embedding} is not divisible by {Heads} heads");
    }

    /// <summary>Parameters of the model (embeddings, blocks, final LayerNorm, untied head).</summary>
    public long ParameterCount
    {
        get
        {
            long d = Embedding, v = Vocabulary;
            long block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d);
            return v * d + Context * d + Layers * block + 2 * d + d * v;
        }
    }
}

/// <summary>
/// A decoder-only transformer (GPT-2's layout): token and position embeddings (<c>wte</c>,
/// <c>wpe</c>), <see cref="GptOptions.Layers"/> pre-LayerNorm blocks <c>h.i</c> (causal self-attention
/// <c>attn.c_attn</c> → <c>attn.c_proj</c>, then the MLP <c>mlp.c_fc</c> → GELU → <c>mlp.c_proj</c>,
/// each with a residual connection), a final LayerNorm <c>ln_f</c> and an untied output projection
/// <c>lm_head</c>. Every projection is an nn.Linear. Takes token ids [B, T] (T ≤ context) and returns
/// next-token logits [B, T, V]. No dropout, so training and attribution see the same function.
/// </summary>
public sealed class Gpt : Module<Tensor, Tensor>, ISequenceModel
{
    private readonly Embedding wte, wpe;
    private readonly ModuleList<GptBlock> h;
    private readonly LayerNorm ln_f;
    private readonly Linear lm_head;

    public Gpt(GptOptions options) : base(nameof(Gpt))
    {
        options.Validate();
        Options = options;
        wte = Embedding(options.Vocabulary, options.Embedding);
        wpe = Embedding(options.Context, options.Embedding);
        h = new ModuleList<GptBlock>(Enumerable.Range(0, options.Layers).Select(_ => new GptBlock(options.Embedding, options.Heads)).ToArray());
        ln_f = LayerNorm(options.Embedding);
        lm_head = Linear(options.Embedding, options.Vocabulary, hasBias: false);
        RegisterComponents();
        InitialiseLikeGpt2(this);
    }

    /// <summary>GPT-2's initialisation: N(0, 0.02) weights, zero biases, LayerNorms left at (1, 0).</summary>
    internal static void InitialiseLikeGpt2(nn.Module module)
    {
        using var _ = no_grad();
        foreach (var (name, p) in module.named_parameters())
            if (name.EndsWith(".bias", StringComparison.Ordinal) && !name.Contains("ln_", StringComparison.Ordinal)) p.zero_();
            else if (!name.Contains("ln_", StringComparison.Ordinal)) init.normal_(p, 0, 0.02);
    }

    /// <summary>Token plus position embeddings of <paramref name="tokens"/> [batch, tokens] through the
    /// blocks (before the final LayerNorm); <paramref name="what"/> names the model in errors.</summary>
    internal static Tensor Encode(Tensor tokens, GptOptions options, Embedding wte, Embedding wpe, ModuleList<GptBlock> h, string what)
    {
        if (tokens.dim() != 2) throw new InfluenceSharpException($"{what}: expects token ids [batch, tokens], got [{string.Join(", ", tokens.shape)}]");
        long b = tokens.shape[0], t = tokens.shape[1];
        if (t > options.Context) throw new InfluenceSharpException($"{what}: {t} tokens exceed the context of {options.Context}");
        var positions = torch.arange(t, dtype: ScalarType.Int64, device: tokens.device).unsqueeze(0).expand(b, t);
        var x = wte.call(tokens) + wpe.call(positions);
        foreach (var block in h) x = block.call(x);
        return x;
    }

    public GptOptions Options { get; }

    public override Tensor forward(Tensor tokens)
    {
        return lm_head.call(ln_f.call(Encode(tokens, Options, wte, wpe, h, "gpt")));
    }
}

/// <summary>One pre-LayerNorm transformer block.</summary>
public sealed class GptBlock : Module<Tensor, Tensor>
{
    private readonly LayerNorm ln_1, ln_2;
    private readonly CausalSelfAttention attn;
    private readonly GptMlp mlp;

    public GptBlock(int width, int heads) : base(nameof(GptBlock))
    {
        ln_1 = LayerNorm(width);
        attn = new CausalSelfAttention(width, heads);
        ln_2 = LayerNorm(width);
        mlp = new GptMlp(width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + attn.call(ln_1.call(x));
        return x + mlp.call(ln_2.call(x));
    }
}

/// <summary>Multi-head causal self-attention: one Linear for queries, keys and values (c_attn), one
/// for the output (c_proj); position t attends to positions ≤ t.</summary>
public sealed class CausalSelfAttention : Module<Tensor, Tensor>
{
    private readonly Linear c_attn, c_proj;
    private readonly int heads;

    public CausalSelfAttention(int width, int heads) : base(nameof(CausalSelfAttention))
    {
        this.heads = heads;
        c_attn = Linear(width, 3 * width);
        c_proj = Linear(width, width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], d = x.shape[2], hd = d / heads;
        var qkv = c_attn.call(x).split(d, 2);
        Tensor Heads(Tensor z) => z.view(b, t, heads, hd).transpose(1, 2);       // [B, H, T, hd]
        var (q, k, v) = (Heads(qkv[0]), Heads(qkv[1]), Heads(qkv[2]));
        var att = q.matmul(k.transpose(2, 3)).div(Math.Sqrt(hd));
        var future = torch.ones(t, t, dtype: ScalarType.Bool, device: x.device).triu(1);
        att = functional.softmax(att.masked_fill(future, double.NegativeInfinity), -1);
        var y = att.matmul(v).transpose(1, 2).contiguous().view(b, t, d);
        return c_proj.call(y);
    }
}

/// <summary>The block's MLP: c_fc (width → 4 width), GELU, c_proj (back).</summary>
public sealed class GptMlp : Module<Tensor, Tensor>
{
    private readonly Linear c_fc, c_proj;

    public GptMlp(int width) : base(nameof(GptMlp))
    {
        c_fc = Linear(width, 4 * width);
        c_proj = Linear(4 * width, width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => c_proj.call(functional.gelu(c_fc.call(x)));
}
