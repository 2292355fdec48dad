// Drives `influence serve` in a real (headless) Chromium as a person would, saving a screenshot of
// every step: open the ranking, filter by class, click an example and see its proponents, mark it
// mislabeled and find the row in RUN/decisions.csv, explain a test point, upload a query image, and
// try a path-traversal address and an oversized upload (both must be refused).
// Usage: BrowserCheck --url URL --run RUN_DIR --out DIR --max-upload BYTES [--measure]
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Microsoft.Playwright;

var opts = new Dictionary<string, string>();
for (int i = 0; i < args.Length; i++)
    if (args[i].StartsWith("--", StringComparison.Ordinal))
        opts[args[i][2..]] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
string url = opts["url"].TrimEnd('/') + "/", run = opts["run"], outDir = opts["out"];
long maxUpload = long.Parse(opts["max-upload"], CultureInfo.InvariantCulture);
bool measureOnly = opts.ContainsKey("measure");
Directory.CreateDirectory(outDir);
string chromium = Environment.GetEnvironmentVariable("PLAYWRIGHT_CHROMIUM") ?? "/usr/bin/chromium";

int step = 0;
void Say(string s) => Console.WriteLine("browser stage: " + s);
void Check(bool ok, string what) { if (!ok) throw new CheckFailed(what); Say("ok: " + what); }
// The machine's load average (1, 5, 15 min) beside every timing: the figures depend on it.
string Load() => File.Exists("/proc/loadavg") ? "load average " + string.Join(" ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) : "load unknown";

using var pw = await Playwright.CreateAsync();
await using var browser = await pw.Chromium.LaunchAsync(new() { ExecutablePath = chromium, Headless = true, Args = new[] { "--no-sandbox", "--disable-gpu" } });
var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1440, Height = 1000 } });
var consoleErrors = new List<string>();
page.Console += (_, m) => { if (m.Type == "error") consoleErrors.Add(m.Text); };
page.PageError += (_, e) => consoleErrors.Add(e);
async Task Shot(string name) => await page.ScreenshotAsync(new() { Path = Path.Combine(outDir, $"{++step:D2}-{name}.png") });
async Task<JsonElement> Api(string path)
{
    var r = await page.APIRequest.GetAsync(url + path);
    return JsonDocument.Parse(await r.TextAsync()).RootElement.Clone();
}

try
{
    // 1. The ranking page.
    var sw = Stopwatch.StartNew();
    var resp = await page.GotoAsync(url);
    await page.WaitForSelectorAsync("body[data-ready='1']", new() { Timeout = 120_000 });
    await page.WaitForFunctionAsync("() => [...document.querySelectorAll('#list img')].slice(0, 24).every(i => i.complete)", null, new() { Timeout = 120_000 });
    double loadS = sw.Elapsed.TotalSeconds;
    Check(resp is { Status: 200 }, "the page loads");
    int cards = await page.Locator("#list .card").CountAsync();
    Check(cards > 0, $"the ranking lists {cards} examples");
    Say(string.Create(CultureInfo.InvariantCulture, $"timing: ranking page ready (first 60 examples with images) in {loadS:F2} s ({Load()})"));
    await Shot("ranking");

    // 2. Click the most suspicious example: its proponents and opponents.
    var first = page.Locator("#list .card").First;
    string index = (await first.GetAttributeAsync("data-index"))!;
    sw.Restart();
    await first.ClickAsync();
    await page.WaitForSelectorAsync($"body[data-explained='train:{index}']", new() { Timeout = 600_000 });
    double clickS = sw.Elapsed.TotalSeconds;
    int props = await page.Locator("#proponents .card").CountAsync(), opps = await page.Locator("#opponents .card").CountAsync();
    Check(props > 0, $"example {index}: {props} proponents and {opps} opponents shown");
    Say(string.Create(CultureInfo.InvariantCulture, $"timing: first proponents click answered in {clickS:F2} s ({Load()})"));
    string answered = (await page.TextContentAsync("#explain-source")) ?? "";
    Check(answered.StartsWith("answered by ", StringComparison.Ordinal), $"the page says which source answered: '{answered}'");
    await Shot("proponents");
    var second = page.Locator("#list .card").Nth(1);
    string index2 = (await second.GetAttributeAsync("data-index"))!;
    sw.Restart();
    await second.ClickAsync();
    await page.WaitForSelectorAsync($"body[data-explained='train:{index2}']", new() { Timeout = 600_000 });
    Say(string.Create(CultureInfo.InvariantCulture, $"timing: second proponents click answered in {sw.Elapsed.TotalSeconds:F2} s ({Load()})"));
    if (measureOnly) { Say("measured"); return 0; }
    await first.ClickAsync();
    await page.WaitForSelectorAsync($"body[data-explained='train:{index}']", new() { Timeout = 600_000 });

    // 3. Mark it mislabeled (should be another class) and find the row in the decisions file.
    var info = await Api("api/info");
    var ranking = await Api("api/ranking?limit=1");
    string given = ranking.GetProperty("rows")[0].GetProperty("example").GetProperty("given").GetString()!;
    string source = ranking.GetProperty("rows")[0].GetProperty("example").GetProperty("source").GetString()!;
    // The page proposes the model's prediction as the new class; a person picks it unless it is the given label.
    string predictedLabel = ranking.GetProperty("rows")[0].GetProperty("example").GetProperty("predicted").GetString()!;
    string target = predictedLabel != given ? predictedLabel : info.GetProperty("classes").EnumerateArray().Select(c => c.GetString()!).First(c => c != given);
    await page.SelectOptionAsync("#relabel-to", target);
    await page.ClickAsync("#mark-relabel");
    await page.WaitForFunctionAsync("() => document.getElementById('decision-state').textContent.startsWith('saved')");
    string csvPath = Path.Combine(run, "decisions.csv");
    var lines = File.ReadAllLines(csvPath);
    Check(lines[0] == "index,source,decision,label", "decisions.csv has the header data clean reads");
    string row = $"{index},{(source.Contains(',') ? "\"" + source + "\"" : source)},relabel,{(target.Contains(',') ? "\"" + target + "\"" : target)}";
    Check(lines.Contains(row), $"decisions.csv holds '{row}'");
    Check(await page.Locator($"#list .card[data-index='{index}'] .dec").TextContentAsync() == "mislabeled: should be " + target, "the card shows the decision");
    await Shot("marked-mislabeled");

    // 4. Filter by class.
    string cls = info.GetProperty("classes")[1].GetString()!;
    await page.SelectOptionAsync("#class", cls);
    await page.WaitForFunctionAsync("c => { const cs = [...document.querySelectorAll('#list .card')]; return cs.length > 0 && document.getElementById('status').textContent === '' && cs.every(x => x.textContent.includes('given: ' + c)); }", cls);
    Check(true, $"the class filter shows only {cls}");
    await Shot("class-filter");

    // 5. A test point.
    await page.SelectOptionAsync("#view", "test");
    await page.WaitForSelectorAsync("#list .card[data-set='test']");
    var tp = page.Locator("#list .card[data-set='test']").First;
    string ti = (await tp.GetAttributeAsync("data-index"))!;
    await tp.ClickAsync();
    await page.WaitForSelectorAsync($"body[data-explained='test:{ti}']", new() { Timeout = 600_000 });
    Check(await page.Locator("#proponents .card").CountAsync() > 0, $"test point {ti}: proponents shown");
    await Shot("test-point");

    // 6. Upload a query image (a test image saved as PNG).
    var png = await page.APIRequest.GetAsync(url + "api/image/test/0.png");
    string query = Path.Combine(outDir, "query.png");
    await File.WriteAllBytesAsync(query, await png.BodyAsync());
    await page.SetInputFilesAsync("#upload", query);
    await page.WaitForSelectorAsync("body[data-explained^='upload']", new() { Timeout = 600_000 });
    Check(await page.Locator("#proponents .card").CountAsync() > 0, "an uploaded image: proponents shown");
    await Shot("upload");

    // 7. An oversized upload is refused with a message.
    string big = Path.Combine(outDir, "oversized.png");
    var bytes = new byte[maxUpload + 1];
    new Random(0).NextBytes(bytes);
    new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }.CopyTo(bytes, 0);
    await File.WriteAllBytesAsync(big, bytes);
    await page.SetInputFilesAsync("#upload", big);
    await page.WaitForSelectorAsync("#status.error", new() { Timeout = 60_000 });
    string msg = (await page.TextContentAsync("#status"))!;
    Check(msg.Contains("limit", StringComparison.Ordinal), $"an upload of {bytes.Length} bytes is refused: '{msg}'");
    await Shot("upload-refused");

    // 8. Path traversal: refused, nothing outside the run or its data is read.
    foreach (var path in new[] { "files/run/..%2f..%2f..%2f..%2fetc%2fpasswd", "files/run/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "files/data/..%2f..%2fetc%2fpasswd", "files/run/%2fetc%2fpasswd" })
    {
        var r = await page.APIRequest.GetAsync(url + path);
        string body = await r.TextAsync();
        Check(r.Status == 404 && !body.Contains("root:", StringComparison.Ordinal), $"{path}: refused ({r.Status})");
    }
    var tr = await page.GotoAsync(url + "files/run/..%2f..%2f..%2f..%2fetc%2fpasswd");
    Check(tr is { Status: 404 } && !(await page.ContentAsync()).Contains("root:", StringComparison.Ordinal), "the traversal address opened in the browser is refused");
    await Shot("traversal-refused");
    var ok = await page.APIRequest.GetAsync(url + "files/run/run.json");
    Check(ok.Status == 200, "a file of the run is served");

    Check(consoleErrors.All(e => e.Contains("404", StringComparison.Ordinal) || e.Contains("413", StringComparison.Ordinal)),
        "no script errors in the page" + (consoleErrors.Count > 0 ? " (only the refused requests: " + string.Join("; ", consoleErrors) + ")" : ""));
    Say($"passed; screenshots in {outDir}");
    return 0;
}
catch (Exception e) when (e is CheckFailed or PlaywrightException or TimeoutException)
{
    try { await Shot("failure"); } catch (PlaywrightException) { }
    Console.Error.WriteLine($"browser stage: FAIL: {e.Message}");
    foreach (var c in consoleErrors) Console.Error.WriteLine($"  page console: {c}");
    return 1;
}

sealed class CheckFailed(string message) : Exception(message);
