using System.CommandLine;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Data;
using InfluenceSharp.Diagnostics;
using InfluenceSharp.Methods;
using InfluenceSharp.Reporting;
using InfluenceSharp.Runs;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Cli.Commands;

/// <summary>`influence explain`: the most helpful (proponents) and most harmful (opponents) training
/// examples for some queries, by an exact streaming top-k over training batches (the score matrix
/// is never held whole).</summary>
public static class ExplainCommand
{
    public static Command Command()
    {
        var run = Opt.Run();
        var queries = new QueryOptions(null);
        var image = Opt.Str("--query-image", "instead of --query: an image (PNG of any bit depth, colour type or interlace, JPEG, BMP, GIF, TGA, PSD) of the data set's height and width as the query; colour is converted to the model's channels", "FILE");
        var prompt = Opt.Str("--prompt", "instead of --query, for a run trained on text: the prompt of a prompt/completion query (with --completion); the query measures -log p(completion | prompt)", "TEXT");
        var completion = Opt.Str("--completion", "with --prompt: the completion whose log-probability given the prompt is attributed", "TEXT");
        var label = Opt.Str("--query-label", "the --query-image's label: class index or name [default: the model's prediction]", "L");
        var methods = Opt.Methods(MethodFactory.Defaults(MethodRole.Attribution), MethodFactory.Names, single: false);
        var top = Opt.Int("--top", "proponents (score > 0) and opponents (score < 0) per query, at most (the image grid draws the first 32 of each)", 8, 1, helpName: "K");
        var useIndex = Opt.Flag("--index", "approximate top-k from the index of the method's store (built by `influence index build` with the same method settings) instead of the exact scan" +
            $" ({string.Join(", ", MethodFactory.IndexMethods)})");
        var probe = Opt.Int("--probe", "with --index: lists searched per query; 0 = the index's lists / 20 (at least 1)", 0, 0);
        var outDir = Opt.Out("explain-M.json (indices, scores, labels) and explain-M-<query>.png grids [default: RUN_DIR/explain]");
        var ms = new MethodSettingOptions();
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("explain", "proponents and opponents of queries by an exact streaming top-k (never the whole score matrix), or approximately from an index (--index), JSON and image grids")
        {
            run,
        };
        queries.AddTo(cmd);
        cmd.Add(image); cmd.Add(prompt); cmd.Add(completion); cmd.Add(label); cmd.Add(methods); cmd.Add(top); cmd.Add(useIndex); cmd.Add(probe); cmd.Add(outDir);
        ms.AddTo(cmd);
        ms.RefuseUnused(cmd, methods);
        cmd.Add(data);
        compute.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            bool Given(Option o) => r.GetResult(o) is { Implicit: false };
            int n = (Given(queries.Indices) ? 1 : 0) + (Given(queries.Count) ? 1 : 0) + (Given(image) ? 1 : 0);
            if (Given(prompt))
            {
                if (n != 0) r.AddError("--prompt: not with --query, --query-count or --query-image (the prompt/completion is the query)");
                if (!Given(completion)) r.AddError("--prompt: needs --completion TEXT (the text whose log-probability is attributed)");
            }
            else if (Given(completion)) r.AddError("--completion: only with --prompt");
            else if (n != 1) r.AddError("--query I,J,..., --query-count N, --query-image FILE or --prompt TEXT --completion TEXT: give one of them");
            if (Given(label) && !Given(image)) r.AddError("--query-label: only with --query-image");
            if (Given(probe) && !r.GetValue(useIndex)) r.AddError("--probe: only with --index");
            if (r.GetValue(useIndex) && Opt.ValueIfValid(r, methods) is { } chosen && chosen.FirstOrDefault(m => !MethodFactory.IndexMethods.Contains(m)) is { } bad)
                r.AddError($"--index: method {bad} has no index (scores that are inner products of stored rows: {string.Join(", ", MethodFactory.IndexMethods)})");
        });
        cmd.SetAction(p =>
        {
            bool quiet = compute.Apply(p);
            string runDir = p.GetValue(run)!;
            var (set, idx, count) = queries.Read(p);
            return Run(runDir, set, idx, count, p.GetValue(image), p.GetValue(prompt) is { } pr ? (pr, p.GetValue(completion)!) : null, p.GetValue(label), p.GetValue(methods)!, p.GetValue(top),
                p.GetValue(outDir) ?? Path.Combine(runDir, "explain"), ms.Read(p), p.GetValue(data), quiet, p.GetValue(useIndex) ? p.GetValue(probe) : null);
        });
        return cmd;
    }

    static int Run(string runDir, string set, int[]? queryIdx, int? queryCount, string? image, (string Prompt, string Completion)? pc, string? label, string[] methods, int k, string outDir,
        MethodSettings settings, string? dataSpec, bool quiet, int? probe)
    {
        var profiler = new Profiler();
        var run = profiler.Time("Load Data", () => RunContext.Load(runDir, dataSpec));
        if (queryCount is { } qc) queryIdx = Enumerable.Range(0, Math.Min(qc, (set == "train" ? run.Data.Train : run.Data.Test).Count)).ToArray();
        var (queries, captions) = pc is { } q ? FromPrompt(run, q.Prompt, q.Completion)
            : image is null ? FromIndices(run, set, queryIdx!) : FromImage(run, image, label, quiet ? null : Console.Error.WriteLine);
        foreach (var method in methods)
            Explain(run, method, settings, queries, captions, k, outDir, profiler, quiet, print: true, probe: probe);
        if (!quiet) Console.Error.Write(profiler.Table());
        AtomicFile.WriteAllText(Path.Combine(outDir, "profile-explain.txt"), profiler.Table());
        Console.WriteLine($"explanations in {outDir}");
        return 0;
    }

    /// <summary>A prompt/completion as a one-sequence query of a text run: its measurement is the
    /// completion's summed −log p given the prompt (the prompt's tokens are not scored).</summary>
    internal static (LabeledDataset Queries, string[] Captions) FromPrompt(Run run, string prompt, string completion)
    {
        if (run.Data.Train is not TextDataset train)
            throw new UsageException($"--prompt: the run's data ({run.Data.Source}) is not text; --prompt/--completion need a run trained on text data (--data text:FILE) with a language model");
        if (completion.Length == 0) throw new UsageException("--completion: empty; give the text whose log-probability is attributed");
        if (train.Tokenizer.Encode(prompt + completion).Count + 1 > train.SequenceLength + 1)
            throw new UsageException($"--prompt/--completion: {train.Tokenizer.Encode(prompt + completion).Count} tokens, longer than the model's {train.SequenceLength}-token context");
        return (TextDataset.PromptCompletions(train.Tokenizer, train.SequenceLength, new[] { (prompt, completion) }), new[] { "prompt" });
    }

    /// <summary>A training sequence's provenance for the JSON: the decoded text and, per document whose
    /// tokens it scores, the document's place and the character span those tokens cover.</summary>
    internal static object TextSource(TextDataset data, int i)
    {
        var spans = new SortedDictionary<int, (int Start, int End)>();
        for (int t = 0; t < data.SequenceLength; t++)
        {
            if (!data.IsScored(i, t)) continue;
            var (_, d, st, len) = data.Token(i, t + 1);
            if (d < 0) continue;
            spans[d] = spans.TryGetValue(d, out var sp) ? (Math.Min(sp.Start, st), Math.Max(sp.End, st + len)) : (st, st + len);
        }
        return new
        {
            kind = "text", text = data.Text(i),
            documents = spans.Select(kv => new { document = kv.Key, where = data.Documents[kv.Key].Where, start = kv.Value.Start, end = kv.Value.End }).ToList(),
        };
    }

    internal static (LabeledDataset Queries, string[] Captions) FromIndices(Run run, string set, int[] queryIdx)
    {
        var source = set switch
        {
            "test" => run.Data.Test, "train" => run.Data.Train,
            _ => throw new ArgumentException($"unknown query set '{set}'", nameof(set)),
        };
        foreach (var q in queryIdx)
            if (q < 0 || q >= source.Count) throw new UsageException($"--query {q}: outside the {set} set (0..{source.Count - 1})");
        return (source.Subset(queryIdx), queryIdx.Select(q => $"{set}{q}").ToArray());
    }

    /// <summary>An image file (PNG, JPEG, BMP, ...) as a one-example query set: it must have the data set's height and width; RGB
    /// is converted to luminance for gray data sets. It is prepared as the run's training images are (size, channels,
    /// normalisation, then the model's own input transform), which <paramref name="say"/> is told.</summary>
    internal static (LabeledDataset Queries, string[] Captions) FromImage(Run run, string path, string? label, Action<string>? say = null)
    {
        if (run.Data.Train is not ImageDataset train)
            throw new UsageException($"--query-image {path}: the run's data ({run.Data.Source}) is not an image data set; choose queries with --query");
        return FromImageFile(run, ImageFile.Load(path, train.Channels), path, label, say);
    }

    /// <summary>An encoded image (bytes of a PNG, JPEG, ...) decoded to the run's channels, as
    /// <see cref="FromImage"/> reads a file; <paramref name="name"/> starts error messages.</summary>
    internal static ImageFile DecodeQueryImage(Run run, byte[] encoded, string name) =>
        run.Data.Train is ImageDataset train ? ImageFile.Decode(encoded, train.Channels, name)
            : throw new InfluenceSharpException($"{name}: the run's data ({run.Data.Source}) is not an image data set");

    /// <summary><see cref="FromImage"/> for an image already decoded to the run's channels.</summary>
    internal static (LabeledDataset Queries, string[] Captions) FromImageFile(Run run, ImageFile image, string path, string? label, Action<string>? say = null)
    {
        var train = (ImageDataset)run.Data.Train;
        var (w0, h0) = (image.Width, image.Height);
        // Image folders hold images of any size, resized to the run's size: so is a query image.
        if (DataSpec.Parse(run.Data.Source).Kind == DataKind.ImageFolder) image = image.Resize(train.Height, train.Width);
        if (say is not null && image.Width == train.Width && image.Height == train.Height)
        {
            var (mean, std) = train.Normalization;
            string F(float[] v) => string.Join("/", v.Select(x => x.ToString("G4", System.Globalization.CultureInfo.InvariantCulture)));
            say($"--query-image {path}: {w0}x{h0} decoded to {(train.Channels == 1 ? "luminance (0.299 R + 0.587 G + 0.114 B)" : "RGB")}"
                + (w0 != image.Width || h0 != image.Height ? $", resized bilinearly to {image.Width}x{image.Height}" : "")
                + $", normalised as the training images ((pixel/255 - mean)/std, mean {F(mean)}, std {F(std)})"
                + (run.Last.Info.Model.Preprocessing is { } pre ? $"; then the model's own input transform: {pre}" : ""));
        }
        if (image.Width != train.Width || image.Height != train.Height)
            throw new InfluenceSharpException($"{path}: image is {image.Width}x{image.Height} but the model takes {train.Width}x{train.Height}");
        var pixels = image.Pixels;
        int y;
        if (label is null)
        {
            var unlabeled = new ImageDataset("query", pixels, new[] { 0 }, train.Channels, train.Height, train.Width, train.NumClasses);
            using var scope = TorchSharp.torch.NewDisposeScope();
            using var noGrad = TorchSharp.torch.no_grad();
            y = (int)run.Last.LoadModel().forward(unlabeled.Inputs(new[] { 0 })).argmax(1).item<long>();
        }
        else if (int.TryParse(label, out var li) && li >= 0 && li < train.NumClasses) y = li;
        else
        {
            y = run.ClassNames.ToList().FindIndex(n => string.Equals(n, label, StringComparison.OrdinalIgnoreCase));
            if (y < 0) throw new UsageException($"--query-label {label}: not a class index or name ({string.Join(", ", run.ClassNames)})");
        }
        return (new ImageDataset("query", pixels, new[] { y }, train.Channels, train.Height, train.Width, train.NumClasses),
            new[] { Path.GetFileNameWithoutExtension(path) });
    }

    /// <summary>A listed sequence's per-token scores: each input token's text (padding left out) beside
    /// its score; the scores add up to the sequence's.</summary>
    static List<object> TokenRows(TextDataset data, int i, double[] scores) =>
        Enumerable.Range(0, Math.Min(scores.Length, data.SequenceLength)).Where(t => data.Token(i, t).Id >= 0)
            .Select(t =>
            {
                var (_, d, st, len) = data.Token(i, t);
                return (object)new { position = t, token = d < 0 ? "" : data.Documents[d].Text.Substring(st, len), score = scores[t] };
            }).ToList();

    /// <summary>One line of text for the console: quoted, line breaks shown as \n, long text cut.</summary>
    internal static string Quote(string text)
    {
        text = text.Replace("\n", "\\n");
        return "\"" + (text.Length > 100 ? text[..100] + "..." : text) + "\"";
    }

    /// <summary>Most proponents (and opponents) drawn in one query's image grid.</summary>
    public const int GridMax = 32;

    internal static TopKResult Explain(Run run, string methodName, MethodSettings settings, LabeledDataset queries, string[] captions, int k,
        string outDir, Profiler profiler, bool quiet = false, bool? print = null, int? probe = null)
    {
        var method = MethodFactory.Create(methodName, run, settings, profiler, quiet);
        var textTrain = run.Data.Train as TextDataset;
        TopKResult raw;
        if (probe is { } pr)
        {
            // Approximate: the index of the method's store (exact when every list is probed).
            var fm = method as FeatureMethod is { HasInnerProductForm: true } f ? f
                : throw new UsageException($"--index: method {methodName} has no index ({string.Join(", ", MethodFactory.IndexMethods)} have)");
            using var index = fm.OpenIndex(run.Data.Train);
            if (!quiet && MethodFactory.IndexNote(methodName) is { } note) Console.Error.WriteLine(note);
            int lists = pr == 0 ? Math.Max(1, index.Lists / 20) : pr;
            if (lists > index.Lists) throw new UsageException($"--probe {pr}: the index has only {index.Lists} lists");
            long scored;
            (raw, scored) = fm.TopKIndexed(queries, run.Data.Train, index, k, lists);
            if (!quiet)
                Console.Error.WriteLine($"{methodName}: index probed {lists} of {index.Lists} lists per query: scored {scored / 2.0 / queries.Count:F0} of {index.Count} rows per query and sign ({scored / 2.0 / queries.Count / index.Count:P1})");
        }
        else
        {
            int queryBlock = QueryBlocks.Auto(QueryBlocks.ParameterCount(run.Last));
            if (!quiet && QueryBlocks.Describe(queries.Count, queryBlock) is { } blocks) Console.Error.WriteLine(blocks);
            using (profiler.Stage("Top-k"))
                raw = method.TopK(queries, run.Data.Train, k, queryBlock);
        }
        // Per-token scores of the listed proponents and opponents, where the method has them (factored
        // influence functions at one checkpoint); before the method lets go of its factors.
        double[][][]? tokensPro = null, tokensOpp = null;
        if (textTrain is not null && method is Methods.InfluenceFunctions.InfluenceFunction inf)
        {
            var signed = raw.WithStrictSigns();
            double[][] PerToken(int r, int[] rows)
            {
                if (rows.Length == 0) return Array.Empty<double[]>();
                using var scope = TorchSharp.torch.NewDisposeScope();
                var t = inf.PerToken(queries.Subset(new[] { r }), textTrain.Subset(rows))[0];
                return Enumerable.Range(0, rows.Length).Select(j => t[j].data<double>().ToArray()).ToArray();
            }
            using (profiler.Stage("Per-token scores"))
            {
                tokensPro = Enumerable.Range(0, queries.Count).Select(r => PerToken(r, signed.Proponents[r])).ToArray();
                tokensOpp = Enumerable.Range(0, queries.Count).Select(r => PerToken(r, signed.Opponents[r])).ToArray();
            }
        }
        MethodLifetime.Release(method);
        // Proponents are helpful (score > 0), opponents harmful (< 0): never the other sign under that name.
        var result = raw.WithStrictSigns();
        OutputDirectory.Create(outDir);
        var names = run.ClassNames;
        var train = run.Data.Train;
        var json = new List<object>();
        // The image grid shows the first GridMax of each list (a grid of thousands of thumbnails is
        // unreadable and slow to draw); the JSON and the printout hold all --top of them.
        static T[][] Head<T>(T[][] rows) => rows.Select(x => x.Take(GridMax).ToArray()).ToArray();
        var shown = new TopKResult(Head(result.Proponents), Head(result.ProponentScores), Head(result.Opponents), Head(result.OpponentScores));
        if (textTrain is not null && queries is TextDataset textQueries)
        {
            // Text: no image grid; each row names its sequence's documents and spans and shows its text.
            for (int r = 0; r < queries.Count; r++)
            {
                object Row(int i, double sc, double[]? tokens) => tokens is null
                    ? new { index = i, score = sc, source = TextSource(textTrain, i) }
                    : new { index = i, score = sc, source = TextSource(textTrain, i), tokens = TokenRows(textTrain, i, tokens) };
                json.Add(new
                {
                    query = captions[r], text = textQueries.Text(r),
                    proponents = result.Proponents[r].Select((i, j) => Row(i, result.ProponentScores[r][j], tokensPro?[r][j])).ToList(),
                    opponents = result.Opponents[r].Select((i, j) => Row(i, result.OpponentScores[r][j], tokensOpp?[r][j])).ToList(),
                });
                if (print ?? !quiet)
                {
                    string Line(int i, double sc) => $"#{i} {sc:G3} {string.Join("; ", textTrain.DocumentsOf(i).Select(d => $"document {d} ({textTrain.Documents[d].Where})"))}: {Quote(textTrain.Text(i))}";
                    Console.WriteLine($"query {captions[r]} ({Quote(textQueries.Text(r))}):");
                    Console.WriteLine("  proponents:");
                    foreach (var (i, sc) in result.Proponents[r].Zip(result.ProponentScores[r])) Console.WriteLine("    " + Line(i, sc));
                    Console.WriteLine("  opponents:");
                    foreach (var (i, sc) in result.Opponents[r].Zip(result.OpponentScores[r])) Console.WriteLine("    " + Line(i, sc));
                }
            }
            Json.WriteFile(Path.Combine(outDir, $"explain-{methodName}.json"), json);
            return result;
        }
        // Labelled texts: no image grid; each row carries its text.
        var trainTexts = train as TextClassDataset;
        var queryTexts = queries as TextClassDataset;
        for (int r = 0; r < queries.Count; r++)
        {
            string caption = captions[r];
            if (trainTexts is null)
                Figures.Explanation(methodName, queries, r, caption, train, shown, r, names, run.Data.Corruption)
                    .SavePng(Path.Combine(outDir, $"explain-{methodName}-{caption}.png"));
            object Row(int i, double s) => trainTexts is null ? new { index = i, score = s, label = names[train.Labels[i]], source = SourceText.Json(train, i) }
                : new { index = i, score = s, label = names[train.Labels[i]], source = SourceText.Json(train, i), text = trainTexts.Texts[i] };
            json.Add(new
            {
                query = caption, label = names[queries.Labels[r]], source = SourceText.Json(queries, r), text = queryTexts?.Texts[r],
                proponents = result.Proponents[r].Zip(result.ProponentScores[r]).Select(p => Row(p.First, p.Second)).ToList(),
                opponents = result.Opponents[r].Zip(result.OpponentScores[r]).Select(p => Row(p.First, p.Second)).ToList(),
            });
            if (print ?? !quiet)
            {
                Console.WriteLine($"query {caption} ({names[queries.Labels[r]]}{(queries.SourceOf(r) is { } qs ? ", " + qs.Text : "")}):");
                Console.WriteLine("  proponents: " + string.Join(", ", result.Proponents[r].Zip(result.ProponentScores[r]).Select(p => $"#{p.First} {names[train.Labels[p.First]]} {p.Second:G3}")));
                Console.WriteLine("  opponents:  " + string.Join(", ", result.Opponents[r].Zip(result.OpponentScores[r]).Select(p => $"#{p.First} {names[train.Labels[p.First]]} {p.Second:G3}")));
            }
        }
        Json.WriteFile(Path.Combine(outDir, $"explain-{methodName}.json"), json);
        return result;
    }
}
