#:project ../../src/InfluenceSharp/InfluenceSharp.csproj
#:package TorchSharp-cpu@0.107.0
#:property PublishAot=false
#:property JsonSerializerIsReflectionEnabledByDefault=true
// Fact tracing on the planted-fact corpus with the gradient-similarity methods and TRAK beside
// EK-FAC: the tests/lm/FactTracing.cs setting (tiny byte-level GPT, width 32, 2 blocks, 40 epochs,
// lr 0.15, one thread), trained into a run directory so that TracIn has checkpoints (every 10th
// epoch: 10, 20, 30, 40). Prints recall@1/@10 of each fact's source document per method.
// Usage: dotnet run bench/experiments/lm-fact-methods.cs -- [seed=3] [facts=24] [others=24] [epochs=40] [lr=0.15] [width=32]
using System.Diagnostics;
using InfluenceSharp.Data;
using InfluenceSharp.Evaluation;
using InfluenceSharp.Features;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Methods.TracIn;
using InfluenceSharp.Methods.Trak;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;

int Arg(int i, int d) => args.Length > i ? int.Parse(args[i]) : d;
double ArgD(int i, double d) => args.Length > i ? double.Parse(args[i], System.Globalization.CultureInfo.InvariantCulture) : d;
int seed = Arg(0, 3), facts = Arg(1, 24), others = Arg(2, 24), epochs = Arg(3, 40), width = Arg(5, 32);
double lr = ArgD(4, 0.15);
torch.set_num_threads(1);
var sw = Stopwatch.StartNew();
var corpus = TextFacts.Generate(facts, others, seed);
var tok = new ByteTokenizer();
int seq = corpus.Documents.Max(d => tok.Encode(d.Text).Count) + 1;
var train = TextDataset.Pack("facts", corpus.Documents, tok, seq, TextPacking.Documents);
var spec = ModelSpec.For("gpt", 1, 1, seq, tok.VocabularySize, new[] { width, 2, 4 });
string runDir = Path.Combine(Path.GetTempPath(), $"lm-fact-methods-{seed}-{Environment.ProcessId}");
try
{
    var result = new Trainer(new TrainOptions { Epochs = epochs, BatchSize = 8, LearningRate = lr, WeightDecay = 0, Seed = 11 }).Train(spec, train, null, runDir);
    Console.WriteLine($"seed {seed}: {facts} facts, {others} other documents, {train.Count} sequences of {seq} bytes; gpt {width}x2; train loss/token {result.History[0].TrainLoss:F3} -> {result.History[^1].TrainLoss:F3} in {sw.Elapsed.TotalSeconds:F0} s");
    var model = result.Model;
    var queries = TextDataset.PromptCompletions(tok, seq, corpus.Facts.Select(f => (f.Prompt, f.Completion)).ToList());
    var task = new LanguageModelTask();
    void Report(string name, Func<TorchSharp.torch.Tensor> scores)
    {
        sw.Restart();
        var ranks = TextFactTracing.SourceRanks(TextFactTracing.DocumentScores(scores(), train), corpus.Facts);
        Console.WriteLine($"{name,-34} recall@1 {TextFactTracing.RecallAt(ranks, 1),5:P0}  recall@10 {TextFactTracing.RecallAt(ranks, 10),5:P0}  median rank {ranks.Order().ElementAt(ranks.Length / 2),2}  ({sw.Elapsed.TotalSeconds:F0} s)");
    }
    Report("EK-FAC", () =>
    {
        using var factors = new FactorFitter(model, task, new FactorOptions { Strategy = FactorStrategy.Ekfac, Seed = 5 }).Fit(train)!;
        return new InfluenceFunction(model, task, factors).PairwiseMatrix(queries, train);
    });
    var every10 = TracInCheckpoint.FromRun(runDir, select: c => c.Info.Epoch % 10 == 0);
    Report($"tracin-last ({every10.Count} checkpoints)", () => { using var m = TracInCP.LastLayer(every10, task); return m.PairwiseMatrix(queries, train); });
    Report($"tracin ({every10.Count} checkpoints)", () => { using var m = new TracInCP(every10, task); return m.PairwiseMatrix(queries, train); });
    Report("graddot (final model)", () => { using var m = GradDot.Create(model, task); return m.PairwiseMatrix(queries, train); });
    var kron = new ProjectionOptions { Layout = ProjectionLayout.Kronecker, Dim = 2048, Seed = 0 };
    Report("trak (final model, CLI defaults)", () => { using var m = new Trak(new[] { model }, new TrakOptions { Projection = kron }, task); return m.PairwiseMatrix(queries, train); });
    Report($"trak ({every10.Count} checkpoints as members)", () => { using var m = new Trak(every10.Select(c => c.Model).ToList(), new TrakOptions { Projection = kron }, task); return m.PairwiseMatrix(queries, train); });
}
finally { if (Directory.Exists(runDir)) Directory.Delete(runDir, recursive: true); }
return 0;
