#:project ../../src/InfluenceSharp/InfluenceSharp.csproj
#:package TorchSharp-cpu@0.107.0
// Fact tracing on the planted-fact corpus: a tiny GPT trained through the Trainer, then recall@1/@10
// of each fact's source document for EK-FAC, K-FAC, identity and a BM25 lexical baseline.
// Fails (exit 1) when EK-FAC's recall@10, averaged over the corpus seeds, is below 80 %. Fixed seeds,
// one thread; a single seed is not asserted alone: one fact of 24 is 4 points of recall, and which
// fact lands 10th or 11th moves with the CPU's floating-point kernels (seed 3 gives 92 % on one machine
// and 79 % on another of the same kind).
// Usage: dotnet run tests/lm/FactTracing.cs -- [facts=24] [others=24] [epochs=40] [lr=0.15] [width=32] [seeds=0,1,2,3]
using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Training;

int Arg(int i, int d) => args.Length > i ? int.Parse(args[i]) : d;
double ArgD(int i, double d) => args.Length > i ? double.Parse(args[i], System.Globalization.CultureInfo.InvariantCulture) : d;
int facts = Arg(0, 24), others = Arg(1, 24), epochs = Arg(2, 40), width = Arg(4, 32);
var seeds = (args.Length > 5 ? args[5] : "0,1,2,3").Split(',').Select(int.Parse).ToArray();
double lr = ArgD(3, 0.15);
// lr 0.15: recall@10 79-100 % over seeds 0-3 (mean 93 %); at 0.3 one seed in four diverged and another fell to 79 %.
TorchSharp.torch.set_num_threads(1);
var ekfacRecalls = new List<double>();
foreach (var seed in seeds)
{
var sw = Stopwatch.StartNew();
var corpus = TextFacts.Generate(facts, others, seed);
var tok = new ByteTokenizer();
int seq = corpus.Documents.Max(d => tok.Encode(d.Text).Count) + 1;
var train = TextDataset.Pack("facts", corpus.Documents, tok, seq, TextPacking.Documents);
var spec = ModelSpec.For("gpt", 1, 1, seq, tok.VocabularySize, new[] { width, 2, 4 });
var result = new Trainer(new TrainOptions { Epochs = epochs, BatchSize = 8, LearningRate = lr, WeightDecay = 0, Seed = 11 }).Train(spec, train, null, null);
Console.WriteLine($"seed {seed}: {facts} facts, {others} other documents, {train.Count} sequences of {seq} bytes; gpt {width}x2; train loss/token {result.History[0].TrainLoss:F3} -> {result.History[^1].TrainLoss:F3} in {sw.Elapsed.TotalSeconds:F0} s");
var model = result.Model;
var queries = TextDataset.PromptCompletions(tok, seq, corpus.Facts.Select(f => (f.Prompt, f.Completion)).ToList());
var task = new LanguageModelTask();
double ekfacRecall10 = double.NaN;
void Report(string name, int[] ranks) =>
    Console.WriteLine($"{name,-28} recall@1 {TextFactTracing.RecallAt(ranks, 1),5:P0}  recall@10 {TextFactTracing.RecallAt(ranks, 10),5:P0}  median rank {ranks.Order().ElementAt(ranks.Length / 2)}");
foreach (var strategy in new[] { FactorStrategy.Ekfac, FactorStrategy.Kfac, FactorStrategy.Identity })
{
    sw.Restart();
    using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = strategy, Seed = 5 }).Fit(train)!;
    var scores = new InfluenceFunction(model, task, factors).PairwiseMatrix(queries, train);
    var ranks = TextFactTracing.SourceRanks(TextFactTracing.DocumentScores(scores, train), corpus.Facts);
    if (strategy == FactorStrategy.Ekfac) ekfacRecall10 = TextFactTracing.RecallAt(ranks, 10);
    Report($"{strategy} ({sw.Elapsed.TotalSeconds:F0} s)", ranks);
}
Report("BM25 prompt+completion", TextFactTracing.SourceRanks(TextFactTracing.Bm25(corpus.Facts.Select(f => f.Prompt + f.Completion).ToList(), corpus.Documents), corpus.Facts));
Report("BM25 completion only", TextFactTracing.SourceRanks(TextFactTracing.Bm25(corpus.Facts.Select(f => f.Completion).ToList(), corpus.Documents), corpus.Facts));
ekfacRecalls.Add(ekfacRecall10);
}
double mean = ekfacRecalls.Average();
Console.WriteLine($"EK-FAC recall@10 over seeds {string.Join(",", seeds)}: {string.Join(", ", ekfacRecalls.Select(r => r.ToString("P0")))}; mean {mean:P0}");
if (!(mean >= 0.8))
{
    Console.Error.WriteLine($"FAIL: EK-FAC mean recall@10 {mean:P0} < 80 %");
    return 1;
}
Console.WriteLine("ok: EK-FAC mean recall@10 >= 80 %");
return 0;
