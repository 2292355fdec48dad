using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using InfluenceSharp.Cli.Serve;
using InfluenceSharp.Data;
using InfluenceSharp.Reporting;
using InfluenceSharp.Scores;
using InfluenceSharp.Storage;
using InfluenceSharp.Training;

namespace InfluenceSharp.Tests.Cli;

/// <summary>A run on an image folder (three Fashion-MNIST classes, three images of each put in the
/// next class's folder) with an identity detection, for the explorer's tests.</summary>
public sealed class ServeRunFixture : IDisposable
{
    readonly TempDir dir = new();
    public string Root => dir.File("photos");
    public string Run => dir.File("run");
    public string Outside => dir.File("secret.txt");

    public ServeRunFixture()
    {
        var train = (ImageDataset)Embedded.Split.Train;
        string[] names = { "bag", "sneaker", "trouser" };
        int[] classes = { 8, 7, 1 };
        for (int c = 0; c < 3; c++)
        {
            var members = Enumerable.Range(0, train.Count).Where(i => train.Labels[i] == classes[c]).Take(24).ToArray();
            for (int k = 0; k < members.Length; k++)
            {
                string folder = Path.Combine(Root, names[k < 3 ? (c + 1) % 3 : c]);
                Directory.CreateDirectory(folder);
                File.WriteAllBytes(Path.Combine(folder, $"{names[c]}-{k:D2}.png"), PngWriter.Encode(train.DisplayPixels(members[k]), 28, 28, 1));
            }
        }
        File.WriteAllText(Path.Combine(Root, "bag", "notes.txt"), "not an image of the data set");
        File.WriteAllText(Outside, "outside the run");
        var r = CliRunner.Run("train", "--data", "imagefolder:" + Root, "--model", "logreg", "--epochs", "3", "--batch-size", "16", "--lr", "0.05", "--out", Run, "--threads", "1", "-q");
        if (r.Code != 0) throw new InvalidOperationException(r.Err);
        r = CliRunner.Run("detect-mislabeled", "--run", Run, "--methods", "identity", "--threads", "1", "-q");
        if (r.Code != 0) throw new InvalidOperationException(r.Err);
    }

    public void Dispose() => dir.Dispose();
}

/// <summary>`influence serve` in process: Kestrel on a free loopback port, driven by HttpClient (and
/// raw requests where HttpClient would normalise the path).</summary>
[Collection("cli")]
public class ServeTests : IClassFixture<ServeRunFixture>
{
    readonly ServeRunFixture fx;
    public ServeTests(ServeRunFixture fx) { this.fx = fx; }

    ServeOptions Options(string? run = null) => new() { RunDir = run ?? fx.Run, Port = 0, MaxUploadBytes = 64 * 1024 };

    static HttpClient Client(ServeServer s, bool page = true)
    {
        var c = new HttpClient { BaseAddress = s.Address };
        if (page) c.DefaultRequestHeaders.Add("X-Influence", "1");
        return c;
    }

    static async Task<JsonElement> Json(HttpResponseMessage r, HttpStatusCode expected = HttpStatusCode.OK)
    {
        string body = await r.Content.ReadAsStringAsync();
        Assert.True(r.StatusCode == expected, $"{(int)r.StatusCode}: {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    static double[] SelfInfluence(string run)
    {
        using var t = Npy.Read(Path.Combine(run, "detect", "self_influence-identity.npy"));
        using var d = t.to_type(TorchSharp.torch.ScalarType.Float64);
        return d.data<double>().ToArray();
    }

    [Fact]
    public async Task RankingIsTheDetectionsOrderWithLabelsSourcesAndClassFilter()
    {
        await using var s = await ServeServer.StartAsync(Options());
        using var c = Client(s);
        var self = SelfInfluence(fx.Run);
        var expected = Enumerable.Range(0, self.Length).OrderByDescending(i => self[i]).ThenBy(i => i).ToArray();
        var j = await Json(await c.GetAsync("api/ranking?method=identity&limit=1000"));
        Assert.Equal(self.Length, j.GetProperty("total").GetInt32());
        var rows = j.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(expected, rows.Select(r => r.GetProperty("example").GetProperty("index").GetInt32()).ToArray());
        var train = RunData.For(Checkpoint.List(fx.Run)[^1]).Train;
        foreach (var r in rows)
        {
            var e = r.GetProperty("example");
            int i = e.GetProperty("index").GetInt32();
            Assert.Equal(self[i], r.GetProperty("score").GetDouble(), 6);
            Assert.Equal(train.ClassName(train.Labels[i]), e.GetProperty("given").GetString());
            Assert.Equal(train.SourceOf(i)!.Name, e.GetProperty("source").GetString());
        }
        // The ranking begins with the images filed under another class: their file names say their true class.
        int misfiled = rows.Take(9).Select(r => r.GetProperty("example"))
            .Count(e => !Path.GetFileName(e.GetProperty("source").GetString()!).StartsWith(e.GetProperty("given").GetString() + "-", StringComparison.Ordinal));
        Assert.True(misfiled >= 1, "no misfiled image in the top 9");

        var sneakers = await Json(await c.GetAsync("api/ranking?method=identity&class=sneaker&limit=1000"));
        var only = sneakers.GetProperty("rows").EnumerateArray().Select(r => r.GetProperty("example")).ToList();
        Assert.Equal(train.Labels.Count(l => train.ClassName(l) == "sneaker"), only.Count);
        Assert.All(only, e => Assert.Equal("sneaker", e.GetProperty("given").GetString()));

        // The page and its script come from the server itself: no external address anywhere.
        string page = await c.GetStringAsync("/") + await c.GetStringAsync("app.js") + await c.GetStringAsync("app.css");
        Assert.DoesNotContain("http://", page);
        Assert.DoesNotContain("https://", page);
        var png = await c.GetByteArrayAsync("api/image/train/0.png");
        Assert.Equal(0x89, png[0]);
    }

    [Fact]
    public async Task ProponentsAreExplainsTopK()
    {
        var r = CliRunner.Run("explain", "--run", fx.Run, "--methods", "identity", "--query", "0,3", "--top", "5", "--out", Path.Combine(fx.Run, "explain-check"), "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(fx.Run, "explain-check", "explain-identity.json")));
        await using var s = await ServeServer.StartAsync(Options());
        using var c = Client(s);
        int q = 0;
        foreach (int test in new[] { 0, 3 })
        {
            var want = doc.RootElement[q++];
            var got = await Json(await c.GetAsync($"api/explain?set=test&index={test}&method=identity&k=5"));
            foreach (var side in new[] { "proponents", "opponents" })
            {
                var w = want.GetProperty(side).EnumerateArray().ToList();
                var g = got.GetProperty(side).EnumerateArray().ToList();
                Assert.Equal(w.Select(x => x.GetProperty("index").GetInt32()), g.Select(x => x.GetProperty("example").GetProperty("index").GetInt32()));
                for (int k = 0; k < w.Count; k++)
                {
                    double a = w[k].GetProperty("score").GetDouble(), b = g[k].GetProperty("score").GetDouble();
                    Assert.True(Math.Abs(a - b) <= 1e-5 * Math.Max(1, Math.Abs(a)), $"{side} {k}: {a} vs {b}");
                }
            }
            Assert.True(got.GetProperty("proponents").GetArrayLength() > 0);
        }
    }

    static Dictionary<string, (long, DateTime)> Snapshot(string dir) =>
        Directory.GetFiles(dir, "*", SearchOption.AllDirectories).ToDictionary(f => f, f => (new FileInfo(f).Length, File.GetLastWriteTimeUtc(f)));

    static void SameTopK(JsonElement want, JsonElement got)
    {
        foreach (var side in new[] { "proponents", "opponents" })
        {
            var w = want.GetProperty(side).EnumerateArray().ToList();
            var g = got.GetProperty(side).EnumerateArray().ToList();
            Assert.Equal(w.Select(x => x.GetProperty("example").GetProperty("index").GetInt32()), g.Select(x => x.GetProperty("example").GetProperty("index").GetInt32()));
            for (int k = 0; k < w.Count; k++)
            {
                double a = w[k].GetProperty("score").GetDouble(), b = g[k].GetProperty("score").GetDouble();
                Assert.True(Math.Abs(a - b) <= 1e-5 * Math.Max(1, Math.Abs(a)), $"{side} {k}: {a} vs {b}");
            }
        }
    }

    [Fact]
    public async Task ProponentsComeFromTheRunsStoreIndexOrFactorsWhenItHasThemWithTheStreamingTopK()
    {
        string store = Path.Combine(fx.Run, "store"), factors = Path.Combine(fx.Run, "factors-identity");
        string[] queries = { "set=test&index=3", "set=train&index=0" };
        try
        {
            var streamed = new List<JsonElement>();
            await using (var s = await ServeServer.StartAsync(Options()))
            {
                using var c = Client(s);
                foreach (var q in queries)
                    foreach (var m in new[] { "tracin-last", "identity" })
                    {
                        var j = await Json(await c.GetAsync($"api/explain?{q}&method={m}&k=6"));
                        Assert.StartsWith("exact streaming top-k", j.GetProperty("source").GetString());
                        Assert.True(j.GetProperty("proponents").GetArrayLength() > 0);
                        streamed.Add(j);
                    }
            }
            Assert.False(Directory.Exists(store));
            var r = CliRunner.Run("build-store", "--run", fx.Run, "--methods", "tracin-last", "--threads", "1", "-q");
            Assert.True(r.Code == 0, r.Err);
            r = CliRunner.Run("fit-factors", "--run", fx.Run, "--strategy", "identity", "--out", factors, "--threads", "1", "-q");
            Assert.True(r.Code == 0, r.Err);
            var before = Snapshot(store).Concat(Snapshot(factors)).ToDictionary();
            await using (var s = await ServeServer.StartAsync(Options()))
            {
                using var c = Client(s);
                int n = 0;
                foreach (var q in queries)
                    foreach (var m in new[] { "tracin-last", "identity" })
                    {
                        var j = await Json(await c.GetAsync($"api/explain?{q}&method={m}&k=6"));
                        string source = j.GetProperty("source").GetString()!;
                        Assert.StartsWith(m == "identity" ? "fitted factors factors-identity" : "feature store store/tracin-last-", source);
                        SameTopK(streamed[n++], j);
                    }
            }
            // The store and the factors were only read.
            var after = Snapshot(store).Concat(Snapshot(factors)).ToDictionary();
            Assert.Equal(before.OrderBy(kv => kv.Key).ToList(), after.OrderBy(kv => kv.Key).ToList());

            r = CliRunner.Run("index", "build", "--run", fx.Run, "--methods", "tracin-last", "--lists", "4", "--threads", "1", "-q");
            Assert.True(r.Code == 0, r.Err);
            await using (var s = await ServeServer.StartAsync(Options()))
            {
                using var c = Client(s);
                var j = await Json(await c.GetAsync($"api/explain?{queries[0]}&method=tracin-last&k=6"));
                Assert.Contains("index of the feature store", j.GetProperty("source").GetString());
                Assert.Contains("1 of 4 lists probed", j.GetProperty("source").GetString());
                Assert.True(j.GetProperty("proponents").GetArrayLength() > 0);
            }
        }
        finally
        {
            if (Directory.Exists(store)) Directory.Delete(store, true);
            if (Directory.Exists(factors)) Directory.Delete(factors, true);
        }
    }

    [Fact]
    public async Task DecisionsAreSavedForDataCleanAndConcurrentWritesAllLand()
    {
        using var tmp = new TempDir();
        string run = fx.Run;
        string file = Path.Combine(run, DecisionsFile.FileName);
        File.Delete(file);
        var train = RunData.For(Checkpoint.List(run)[^1]).Train;
        int other = (train.Labels[0] + 1) % train.NumClasses;
        try
        {
            await using (var s = await ServeServer.StartAsync(Options()))
            await using (var s2 = await ServeServer.StartAsync(Options()))   // a second explorer on the same run: readers both
            {
                using var c = Client(s);
                using var c2 = Client(s2);
                await Json(await c.PostAsJsonAsync("api/decision", new { index = 0, decision = "relabel", label = train.ClassName(other) }));
                await Json(await c.PostAsJsonAsync("api/decision", new { index = 1, decision = "remove" }));
                await Json(await c2.PostAsJsonAsync("api/decision", new { index = 2, decision = "keep" }));
                // Both explorers write at once: every decision lands (each write re-reads under the lock).
                await Task.WhenAll(Enumerable.Range(10, 20).Select(i => (i % 2 == 0 ? c : c2).PostAsJsonAsync("api/decision", new { index = i, decision = "remove" })));
                await Json(await c.PostAsJsonAsync("api/decision", new { index = 29, decision = "clear" }));
                // Bad decisions are clean errors, and change nothing.
                var bad = await Json(await c.PostAsJsonAsync("api/decision", new { index = 3, decision = "relabel", label = "zebra" }), HttpStatusCode.BadRequest);
                Assert.Contains("zebra", bad.GetProperty("error").GetString());
                await Json(await c.PostAsJsonAsync("api/decision", new { index = 99999, decision = "remove" }), HttpStatusCode.BadRequest);
                await Json(await c.PostAsync("api/decision", new StringContent("{not json", Encoding.UTF8, "application/json")), HttpStatusCode.BadRequest);
                var list = await Json(await c2.GetAsync("api/decisions"));
                Assert.Equal(2 + 1 + 19, list.GetArrayLength());
            }
            var lines = File.ReadAllLines(file);
            Assert.Equal(DecisionsFile.Header, lines[0]);
            Assert.Contains($"0,{train.SourceOf(0)!.Name},relabel,{train.ClassName(other)}", lines);
            Assert.DoesNotContain(lines, l => l.StartsWith("29,", StringComparison.Ordinal));
            Assert.Empty(Directory.GetFiles(run, ".decisions.csv.tmp-*"));

            var r = CliRunner.Run("data", "clean", "--run", run, "--from", file, "--out", tmp.File("cleaned"), "-q");
            Assert.True(r.Code == 0, r.Err);
            Assert.Contains("20 training files left out", r.Out);
            Assert.Contains("1 relabelled", r.Out);
            string name = Path.GetFileName(fx.Root);
            Assert.True(File.Exists(Path.Combine(tmp.File("cleaned"), name, train.ClassName(other), Path.GetFileName(train.SourceOf(0)!.Name!))));
            Assert.False(File.Exists(Path.Combine(tmp.File("cleaned"), name, train.SourceOf(1)!.Name!)));
        }
        finally { File.Delete(file); }
    }

    /// <summary>Sends a request line as written, without the client normalising its path.</summary>
    static async Task<(int Status, string Body)> Raw(Uri address, string path, string? host = null)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(address.Host, address.Port);
        using var stream = tcp.GetStream();
        var req = Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: {host ?? address.Authority}\r\nConnection: close\r\n\r\n");
        await stream.WriteAsync(req);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string all = await reader.ReadToEndAsync();
        int status = int.Parse(all.Split(' ')[1], CultureInfo.InvariantCulture);
        return (status, all[(all.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]);
    }

    [Fact]
    public async Task OnlyFilesOfTheRunAndItsDataAreServed()
    {
        string link = Path.Combine(fx.Run, "escape.txt"), dirLink = Path.Combine(fx.Run, "up");
        File.CreateSymbolicLink(link, fx.Outside);
        Directory.CreateSymbolicLink(dirLink, Path.GetDirectoryName(fx.Outside)!);
        try
        {
            await using var s = await ServeServer.StartAsync(Options());
            var train = RunData.For(Checkpoint.List(fx.Run)[^1]).Train;
            string rel = train.SourceOf(0)!.Name!;
            using var c = Client(s);
            Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(fx.Root, rel)), await c.GetByteArrayAsync("files/data/" + rel));
            Assert.Equal(await File.ReadAllTextAsync(Path.Combine(fx.Run, "run.json")), await c.GetStringAsync("files/run/run.json"));
            string secretName = Path.GetFileName(fx.Outside);
            foreach (var path in new[]
            {
                "/files/run/../secret.txt", "/files/run/..%2fsecret.txt", "/files/run/%2e%2e%2fsecret.txt", "/files/run/%2e%2e/secret.txt",
                "/files/run/..%5csecret.txt", "/files/run/" + Uri.EscapeDataString(fx.Outside), "/files/run//" + fx.Outside.TrimStart('/'),
                "/files/run/escape.txt", "/files/run/up/" + secretName, "/files/run/.lock", "/files/run/%00run.json",
                "/files/data/../../secret.txt", "/files/data/..%2f..%2f" + secretName, "/files/data/bag/notes.txt",
                "/files/data/" + Uri.EscapeDataString(Path.Combine(fx.Root, rel)), "/files/run/../../../../../../etc/passwd",
            })
            {
                var (status, body) = await Raw(s.Address, path);
                Assert.True(status is 400 or 404, $"{path}: {status} {body}");
                Assert.DoesNotContain("outside the run", body);
                Assert.DoesNotContain("root:", body);
                Assert.DoesNotContain("not an image of the data set", body);
            }
        }
        finally { File.Delete(link); Directory.Delete(dirLink); }
    }

    [Fact]
    public async Task UploadsAreLimitedAndExplainedLikeQueryImages()
    {
        await using var s = await ServeServer.StartAsync(Options());
        using var c = Client(s);
        var big = new ByteArrayContent(new byte[64 * 1024 + 1]);
        var j = await Json(await c.PostAsync("api/upload", big), HttpStatusCode.RequestEntityTooLarge);
        Assert.Contains("limit", j.GetProperty("error").GetString());
        // Chunked (no length given): refused once the body passes the limit, with 413 or, while the
        // client still sends, by closing the connection; the server goes on serving.
        var chunked = new StreamContent(new MemoryStream(new byte[200 * 1024]));
        var req = new HttpRequestMessage(HttpMethod.Post, "api/upload") { Content = chunked };
        req.Headers.TransferEncodingChunked = true;
        try { Assert.Equal(HttpStatusCode.RequestEntityTooLarge, (await c.SendAsync(req)).StatusCode); }
        catch (HttpRequestException) { }
        Assert.Equal(HttpStatusCode.OK, (await c.GetAsync("api/info")).StatusCode);
        j = await Json(await c.PostAsync("api/upload", new ByteArrayContent(Encoding.ASCII.GetBytes("not an image"))), HttpStatusCode.BadRequest);
        Assert.Contains("not an image", j.GetProperty("error").GetString());
        Assert.DoesNotContain("   at ", j.GetProperty("error").GetString());

        // A training image uploaded as a file gets the training example's own prediction and proponents.
        var train = RunData.For(Checkpoint.List(fx.Run)[^1]).Train;
        var bytes = await File.ReadAllBytesAsync(train.SourceOf(5)!.FullPath!);
        var up = new ByteArrayContent(bytes);
        up.Headers.Add("X-File-Name", "../../query.png");
        j = await Json(await c.PostAsync("api/upload", up));
        string set = j.GetProperty("set").GetString()!;
        Assert.Equal("query.png", j.GetProperty("name").GetString());
        var viaUpload = await Json(await c.GetAsync($"api/explain?set={set}&index=0&method=identity&k=4"));
        var viaIndex = await Json(await c.GetAsync("api/explain?set=train&index=5&method=identity&k=4"));
        Assert.Equal(viaIndex.GetProperty("query").GetProperty("predicted").GetString(), j.GetProperty("predicted").GetString());
        static int[] Ids(JsonElement e) => e.GetProperty("proponents").EnumerateArray().Select(x => x.GetProperty("example").GetProperty("index").GetInt32()).ToArray();
        if (viaIndex.GetProperty("query").GetProperty("predicted").GetString() == viaIndex.GetProperty("query").GetProperty("given").GetString())
            Assert.Equal(Ids(viaIndex), Ids(viaUpload));
        Assert.Empty(Directory.GetFiles(fx.Run, "*query*", SearchOption.AllDirectories));
    }

    [Fact]
    public async Task BadRequestsAreCleanErrors()
    {
        await using var s = await ServeServer.StartAsync(Options());
        using var c = Client(s);
        foreach (var (path, text) in new[]
        {
            ("api/ranking?method=nosuch", "nosuch"), ("api/ranking?class=zebra", "zebra"), ("api/ranking?limit=-1", "limit"),
            ("api/explain?set=train&index=100000", "outside"), ("api/explain?set=elsewhere&index=0", "elsewhere"),
            ("api/explain?set=train&index=0&method=nosuch", "nosuch"), ("api/explain?set=train&index=abc", "index"),
        })
        {
            var r = await c.GetAsync(path);
            string body = await r.Content.ReadAsStringAsync();
            Assert.True(r.StatusCode == HttpStatusCode.BadRequest, $"{path}: {(int)r.StatusCode} {body}");
            Assert.Contains(text, JsonDocument.Parse(body).RootElement.GetProperty("error").GetString());
        }
        Assert.Equal(HttpStatusCode.NotFound, (await c.GetAsync("api/image/train/100000.png")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await c.GetAsync("nothing-here")).StatusCode);
        // A POST without the page's header (as a cross-site form sends it) is refused.
        using var plain = Client(s, page: false);
        Assert.Equal(HttpStatusCode.Forbidden, (await plain.PostAsJsonAsync("api/decision", new { index = 0, decision = "remove" })).StatusCode);
        Assert.False(File.Exists(Path.Combine(fx.Run, DecisionsFile.FileName)));
        // Another Host header (DNS rebinding) is refused.
        Assert.Equal(400, (await Raw(s.Address, "/api/info", "attacker.example")).Status);
    }

    [Fact]
    public async Task TokenIsRequiredWhenSetAndForOtherHosts()
    {
        await Assert.ThrowsAsync<global::InfluenceSharp.Cli.UsageException>(() => ServeServer.StartAsync(Options() with { Host = "0.0.0.0" }));
        var cli = CliRunner.Run("serve", "--run", fx.Run, "--host", "0.0.0.0", "--port", "0");
        Assert.Equal(2, cli.Code);
        Assert.Contains("--token", cli.Err);

        await using var s = await ServeServer.StartAsync(Options() with { Token = "s3cret-token" });
        using var none = Client(s);
        Assert.Equal(HttpStatusCode.Unauthorized, (await none.GetAsync("api/info")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await none.GetAsync("api/info?token=wrong-token")).StatusCode);
        using var withHeader = Client(s);
        withHeader.DefaultRequestHeaders.Add("X-Influence-Token", "s3cret-token");
        Assert.Equal(HttpStatusCode.OK, (await withHeader.GetAsync("api/info")).StatusCode);
        // The printed address (?token=) sets a cookie and leads to the page.
        var handler = new HttpClientHandler { CookieContainer = new CookieContainer() };
        using var browser = new HttpClient(handler) { BaseAddress = s.Address };
        var page = await browser.GetAsync("/?token=s3cret-token");
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("/", page.RequestMessage!.RequestUri!.AbsolutePath);
        Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("api/info")).StatusCode);
    }

    [Fact]
    public async Task ServeIsAReaderOfTheRun()
    {
        await using var s = await ServeServer.StartAsync(Options());
        var r = CliRunner.Run("train", "--data", "imagefolder:" + fx.Root, "--model", "logreg", "--epochs", "1", "--out", fx.Run, "--overwrite", "--threads", "1", "-q");
        Assert.Equal(1, r.Code);
        Assert.Contains("being read", r.Err);
    }

    [Fact]
    public async Task TextClassificationRunsShowTheirTextsAndNoImages()
    {
        using var dir = new TempDir();
        var rng = new Random(20261207);
        string[][] words = { "ball goal team match score coach".Split(' '), "bread soup cheese apple salt bake".Split(' ') };
        var lines = new List<string> { "label,text" };
        for (int i = 0; i < 24; i++)
            for (int k = 0; k < 2; k++)
                lines.Add($"{(k == 0 ? "sport" : "food")},\"{string.Join(" ", Enumerable.Range(0, 6).Select(_ => words[k][rng.Next(6)]))} <i>&</i>\"");
        string csv = dir.File("topics.csv"), run = dir.File("run");
        File.WriteAllText(csv, string.Join("\n", lines) + "\n");
        var r = CliRunner.Run("train", "--data", $"text-classes:{csv}?seq=10", "--model", "gpt", "--widths", "8,1,2", "--epochs", "2",
            "--lr", "0.05", "--batch-size", "8", "--seed", "1", "--out", run, "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);
        r = CliRunner.Run("detect-mislabeled", "--run", run, "--methods", "identity", "--threads", "1", "-q");
        Assert.True(r.Code == 0, r.Err);

        await using var s = await ServeServer.StartAsync(Options(run));
        using var c = Client(s);
        var info = await Json(await c.GetAsync("api/info"));
        Assert.False(info.GetProperty("images").GetBoolean());
        var texts = ((TextClassDataset)RunData.For(Checkpoint.List(run)[^1]).Train).Texts;
        var rows = (await Json(await c.GetAsync("api/ranking?method=identity&limit=1000"))).GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(texts.Count, rows.Count);
        foreach (var row in rows)
        {
            var ex = row.GetProperty("example");
            Assert.Equal(texts[ex.GetProperty("index").GetInt32()], ex.GetProperty("text").GetString());
        }
        var explained = await Json(await c.GetAsync("api/explain?set=test&index=0&method=identity&k=3"));
        Assert.Contains("</i>", explained.GetProperty("proponents")[0].GetProperty("example").GetProperty("text").GetString());
        Assert.Equal(HttpStatusCode.NotFound, (await c.GetAsync("api/image/train/0.png")).StatusCode);
    }
}
