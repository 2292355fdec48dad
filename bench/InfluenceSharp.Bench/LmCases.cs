using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using InfluenceSharp.Methods.InfluenceFunctions;
using InfluenceSharp.Models;
using InfluenceSharp.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace InfluenceSharp.Bench;

/// <summary>
/// Language-model throughput in tokens per second, all measured in one process on the same GPT, data
/// and thread count: the training step (Trainer, minibatch SGD, the second of two epochs), EK-FAC's
/// fit (covariance pass, eigenvalue pass, and the whole fit with its eigendecompositions, true Fisher:
/// sampled targets at every position) and EK-FAC pairwise scoring (precondition the queries, then
/// score every training sequence). Tokens are the scored target tokens (padding excluded), summed
/// over the training sequences a stage goes through. Data: Debian's fortunes (fortunes + wisdom + platitudes,
/// a document per fortune, byte tokens, 64 per sequence, one sequence per document) when installed,
/// else the built-in planted-fact corpus. `--n N` caps the training sequences (default: all).
/// </summary>
public static class LmCases
{
    const int Seq = 64, Batch = 16, Queries = 100;
    static readonly string[] FortuneFiles = { "fortunes", "wisdom", "platitudes" };
    const string FortuneDir = "/usr/share/games/fortunes";

    static (List<TextDocument> Docs, string Source) Corpus()
    {
        if (FortuneFiles.All(f => File.Exists(Path.Combine(FortuneDir, f))))
        {
            // strfile format: entries end at a line holding only '%'.
            var docs = new List<TextDocument>();
            foreach (var f in FortuneFiles)
                foreach (var entry in File.ReadAllText(Path.Combine(FortuneDir, f)).Split("\n%\n"))
                {
                    var text = string.Join('\n', entry.Split('\n').Select(l => l.TrimEnd()).Where(l => l.Length > 0));
                    if (text.Length > 0 && text != "%") docs.Add(new TextDocument(text, f));
                }
            return (docs, $"fortunes ({string.Join("+", FortuneFiles)}, {docs.Count} entries)");
        }
        return (TextFacts.Default.Documents.ToList(), "planted-facts (fortunes not installed)");
    }

    static long Tokens(TextDataset d)
    {
        using var y = d.Targets(Enumerable.Range(0, d.Count).ToArray());
        return GptObjective.Scored(y);
    }

    public static IEnumerable<BenchResult> Throughput(BenchContext c)
    {
        var (docs, source) = Corpus();
        var (trainDocs, testDocs) = TextDataReader.SplitDocuments(docs.Count, 0.15, 0);
        var tok = new ByteTokenizer();
        var train = TextDataset.Pack("train", trainDocs.Select(i => docs[i]).ToList(), tok, Seq, TextPacking.Documents);
        if (c.N < train.Count) train = train.Subset(Enumerable.Range(0, c.N).ToArray());
        var test = TextDataset.Pack("test", testDocs.Select(i => docs[i]).ToList(), tok, Seq, TextPacking.Documents);
        var queries = test.Subset(Enumerable.Range(0, Math.Min(Queries, test.Count)).ToArray());
        long trainTokens = Tokens(train), queryTokens = Tokens(queries);
        string data = $"{source}; {train.Count} sequences, {trainTokens} scored tokens; torch threads {torch.get_num_threads()}";

        foreach (var widths in new[] { new[] { 32, 2, 2 }, new[] { 64, 2, 4 } })
        {
            var spec = ModelSpec.For("gpt", 1, 1, Seq, train.NumClasses, widths);
            string name = $"lm-gpt-{widths[0]}x{widths[1]}";
            long nParams = new GptOptions(train.NumClasses, Seq, widths[0], widths[1], widths[2]).ParameterCount;

            // Training step: two epochs; the second is timed (the first pays one-off warm-up).
            var o = new TrainOptions { Epochs = 2, BatchSize = Batch, LearningRate = 0.1, WeightDecay = 0, Schedule = LrSchedule.OneCycle, Seed = 0 };
            var result = new Trainer(o).Train(spec, train, null, null);
            using var model = result.Model;
            double step = result.History[^1].Seconds;
            yield return Row(name, "training step (SGD, batch 16), epoch 2", train.Count, trainTokens, step, step, $"{nParams} parameters; train loss {result.History[^1].TrainLoss:F3}/token; {data}");

            var task = new LanguageModelTask();
            var prof = new Diagnostics.Profiler();
            Factors? factors = null;
            double fit = Measure.Seconds(() => factors = new FactorFitter(model, task,
                new FactorOptions { Strategy = FactorStrategy.Ekfac, TrainBatchSize = Batch, PartitionSize = train.Count }, prof).Fit(train));
            double cov = prof.Stages.Where(s => s.Name == "Fit Covariance").Sum(s => s.Total);
            double lam = prof.Stages.Where(s => s.Name == "Fit Lambda").Sum(s => s.Total);
            yield return Row(name, "EK-FAC covariance pass", train.Count, trainTokens, cov, step, "");
            yield return Row(name, "EK-FAC eigenvalue pass", train.Count, trainTokens, lam, step, "");
            yield return Row(name, "EK-FAC fit, whole (with eigendecompositions)", train.Count, trainTokens, fit, step,
                string.Join(", ", prof.Stages.Select(s => $"{s.Name} {s.Total:F2} s")));

            using (factors)
            {
                var sp = new Diagnostics.Profiler();
                var f = new InfluenceFunction(model, task, factors!, new ScoreOptions { TrainBatchSize = Batch, QueryBatchSize = Batch }, sp);
                double checksum = 0;
                double t = Measure.Seconds(() => f.Pairwise(queries, train, (_, block) => checksum += block.sum().item<float>()));
                double pre = sp.Stages.Where(s => s.Name == "Precondition Queries").Sum(s => s.Total);
                double score = sp.Stages.Where(s => s.Name == "Compute Pairwise Score").Sum(s => s.Total);
                yield return Row(name, $"EK-FAC pairwise: precondition {queries.Count} queries", queries.Count, queryTokens, pre, step, $"{queryTokens} query tokens");
                yield return Row(name, $"EK-FAC pairwise: score {queries.Count} queries x training sequences", train.Count, trainTokens, score, step,
                    $"{queries.Count * (double)train.Count / score:F0} query-sequence pairs/s");
                yield return Row(name, "EK-FAC pairwise, whole", train.Count, trainTokens, t, step, $"checksum {checksum:E3}");
            }
        }
    }

    /// <summary>A stage's row: tokens/s in the note, and its time against one training epoch over the
    /// same sequences (the yardstick: "this stage costs k epochs of training").</summary>
    static BenchResult Row(string name, string stage, long sequences, long tokens, double seconds, double epoch, string note) =>
        new(name, stage, sequences, seconds, 0, Measure.PeakRssMiB(),
            $"{tokens / seconds:F0} tokens/s; {seconds / epoch:F2} training epochs" + (note.Length > 0 ? "; " + note : ""));
}
