using System.Globalization;
using System.Net;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using InfluenceSharp.Cli.Commands;
using InfluenceSharp.Data;
using InfluenceSharp.Methods;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace InfluenceSharp.Cli.Serve;

/// <summary>What `influence serve` is asked to do.</summary>
public sealed record ServeOptions
{
    public required string RunDir { get; init; }
    public string? DataSpec { get; init; }
    /// <summary>Ranking methods (null: every detect-mislabeled result of the run, else the registry's detection default).</summary>
    public IReadOnlyList<string>? Methods { get; init; }
    /// <summary>The method for proponents when no ranking method is one.</summary>
    public string ExplainMethod { get; init; } = MethodFactory.Defaults(MethodRole.Explorer);
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0: a free port.</summary>
    public int Port { get; init; } = 8770;
    public string? Token { get; init; }
    public long MaxUploadBytes { get; init; } = 4 << 20;
    public int Top { get; init; } = 16;
}

/// <summary>The explorer's web server (Kestrel, loopback by default): a page and its script from
/// embedded resources and a small JSON API over a <see cref="ServeSession"/>. Only the run's files,
/// the data set's own files (image folders) and the decisions file are ever touched, the last the
/// only one written.</summary>
public sealed class ServeServer : IAsyncDisposable
{
    readonly WebApplication app;
    readonly ServeSession session;

    ServeServer(WebApplication app, ServeSession session, Uri address)
    {
        this.app = app; this.session = session; Address = address;
    }

    /// <summary>Where it listens (http://127.0.0.1:PORT/).</summary>
    public Uri Address { get; }

    /// <summary>Loads the run and starts listening; <paramref name="say"/> hears what it loads.</summary>
    public static async Task<ServeServer> StartAsync(ServeOptions o, Action<string>? say = null)
    {
        var host = ParseHost(o.Host);
        if (!IPAddress.IsLoopback(host) && string.IsNullOrEmpty(o.Token))
            throw new UsageException($"--host {o.Host}: exposing the explorer beyond this machine needs --token SECRET (every request must carry it)");
        var session = ServeSession.Open(o, say);
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory, Args = Array.Empty<string>() });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(host, o.Port);
            k.Limits.MaxRequestBodySize = o.MaxUploadBytes;
            k.AddServerHeader = false;
        });
        var app = builder.Build();
        var api = new ServeApi(session, o);
        app.Use(api.Guard);
        api.Map(app);
        try { await app.StartAsync(); }
        catch (IOException e)
        {
            session.Dispose();
            throw new InfluenceSharpException($"--port {o.Port}: cannot listen on {o.Host}:{o.Port} ({e.Message.Split('\n')[0]}); choose another port (--port 0 picks a free one)");
        }
        var bound = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ServeServer(app, session, new Uri(bound.Replace("[::]", "localhost", StringComparison.Ordinal) + "/"));
    }

    static IPAddress ParseHost(string host) =>
        host == "localhost" ? IPAddress.Loopback
        : IPAddress.TryParse(host, out var a) ? a
        : throw new UsageException($"--host {host}: not an IP address (127.0.0.1, 0.0.0.0, ::1, ...)");

    public Task WaitForShutdownAsync(CancellationToken ct) => app.WaitForShutdownAsync(ct);

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        session.Dispose();
    }
}

/// <summary>The routes: /, /app.js, /app.css; /api/* (JSON, images); /files/run/PATH and
/// /files/data/PATH (the run's files; the data set's files by their source path).</summary>
internal sealed class ServeApi(ServeSession s, ServeOptions o)
{
    const string TokenCookie = "influence_token";

    /// <summary>Token check (when one is set), Host check against DNS rebinding (loopback without a
    /// token), and a custom header on every POST (a cross-site form cannot send it).</summary>
    public async Task Guard(HttpContext c, Func<Task> next)
    {
        c.Response.Headers["X-Content-Type-Options"] = "nosniff";
        c.Response.Headers["Referrer-Policy"] = "no-referrer";
        c.Response.Headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; frame-ancestors 'none'";
        if (o.Token is { Length: > 0 } token)
        {
            string? given = c.Request.Headers["X-Influence-Token"].FirstOrDefault()
                ?? (c.Request.Headers.Authorization.FirstOrDefault() is { } a && a.StartsWith("Bearer ", StringComparison.Ordinal) ? a[7..] : null)
                ?? c.Request.Cookies[TokenCookie];
            string? inQuery = c.Request.Query["token"].FirstOrDefault();
            if (given is null && inQuery is not null && Same(inQuery, token) && c.Request.Method == "GET")
            {
                // A link with ?token= sets the cookie once and drops the token from the address bar.
                c.Response.Cookies.Append(TokenCookie, token, new CookieOptions { HttpOnly = true, SameSite = SameSiteMode.Strict, Path = "/" });
                c.Response.Redirect(c.Request.Path.HasValue ? c.Request.Path.Value! : "/");
                return;
            }
            if (given is null || !Same(given, token)) { await Error(c, 401, "a token is required: open the address printed by `influence serve` (with ?token=...)"); return; }
        }
        else if (!IsLocalHostHeader(c.Request.Host.Host)) { await Error(c, 400, $"host '{c.Request.Host.Host}' refused: the explorer answers to 127.0.0.1 or localhost"); return; }
        if (HttpMethods.IsPost(c.Request.Method) && c.Request.Headers["X-Influence"].Count == 0)
        { await Error(c, 403, "POST requests need the X-Influence header (sent by the explorer's page)"); return; }
        try { await next(); }
        catch (BadHttpRequestException e) when (e.StatusCode == 413) { await Error(c, 413, $"request body over the limit of {o.MaxUploadBytes} bytes (--max-upload)"); }
        catch (InfluenceSharpException e) { await Error(c, 400, e.Message); }
        catch (OperationCanceledException) when (c.RequestAborted.IsCancellationRequested) { }
    }

    static bool Same(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));

    static bool IsLocalHostHeader(string host) =>
        host is "127.0.0.1" or "localhost" or "[::1]" or "::1" || (IPAddress.TryParse(host.Trim('[', ']'), out var a) && IPAddress.IsLoopback(a));

    static Task Error(HttpContext c, int status, string message)
    {
        if (c.Response.HasStarted) return Task.CompletedTask;
        c.Response.StatusCode = status;
        return c.Response.WriteAsJsonAsync(new { error = message });
    }

    public void Map(WebApplication app)
    {
        app.MapGet("/", () => Embedded("index.html", "text/html; charset=utf-8"));
        app.MapGet("/app.js", () => Embedded("app.js", "text/javascript; charset=utf-8"));
        app.MapGet("/app.css", () => Embedded("app.css", "text/css; charset=utf-8"));
        app.MapGet("/api/info", Info);
        app.MapGet("/api/ranking", Ranking);
        app.MapGet("/api/test", TestList);
        app.MapGet("/api/image/{set}/{index:int}.png", Image);
        app.MapGet("/api/explain", Explain);
        app.MapPost("/api/upload", Upload);
        app.MapGet("/api/decisions", () => Results.Json(s.Decisions.Read().Values));
        app.MapPost("/api/decision", SetDecision);
        app.MapGet("/files/run/{**path}", RunFile);
        app.MapGet("/files/data/{**path}", DataFile);
        app.MapFallback((HttpContext c) => Error(c, 404, $"{c.Request.Path}: no such page"));
    }

    static IResult Embedded(string name, string type)
    {
        using var stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("serve/" + name)
            ?? throw new InvalidOperationException($"embedded resource serve/{name} is missing");
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return Results.Bytes(ms.ToArray(), type);
    }

    IResult Info() => Results.Json(new
    {
        run = s.Run.Dir, data = s.Run.Data.Source, classes = s.ClassNames, train = s.Train.Count, test = s.Test.Count,
        images = s.HasImages, corrupted = s.Run.Data.Corruption?.Indices.Length,
        methods = s.Rankings.Select(kv => new { name = kv.Key, from = kv.Value.From }),
        explain = s.ExplainMethod(null), top = o.Top, maxUpload = o.MaxUploadBytes,
        version = LibraryInfo.Version,
    });

    object Row(LabeledDataset data, int[] predicted, int i, IDictionary<int, Decision>? decisions) => new
    {
        index = i, given = s.ClassNames[data.Labels[i]], predicted = s.ClassNames[predicted[i]],
        source = SourceText.Of(data, i), file = data.SourceOf(i) is { Kind: ExampleSourceKind.File } f ? f.Name : null,
        text = data is TextClassDataset texts ? texts.Texts[i] : null,
        trueLabel = ReferenceEquals(data, s.Train) && s.TrueLabel(i) is { } t ? s.ClassNames[t] : null,
        decision = decisions is not null && decisions.TryGetValue(i, out var d) ? d : null,
    };

    static int Int(HttpRequest r, string name, int fallback, int min, int max)
    {
        string? v = r.Query[name].FirstOrDefault();
        if (string.IsNullOrEmpty(v)) return fallback;
        if (!int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out int x) || x < min || x > max)
            throw new InfluenceSharpException($"{name}={v}: an integer from {min} to {max}");
        return x;
    }

    int? ClassFilter(HttpRequest r)
    {
        string? c = r.Query["class"].FirstOrDefault();
        if (string.IsNullOrEmpty(c)) return null;
        int k = s.ClassNames.ToList().IndexOf(c);
        return k >= 0 ? k : throw new InfluenceSharpException($"class '{c}': not a class ({string.Join(", ", s.ClassNames)})");
    }

    IResult Ranking(HttpRequest r)
    {
        string method = r.Query["method"].FirstOrDefault() is { Length: > 0 } m ? m : s.Rankings.Keys.First();
        if (!s.Rankings.TryGetValue(method, out var rank))
            throw new InfluenceSharpException($"method '{method}': no ranking ({string.Join(", ", s.Rankings.Keys)})");
        int? cls = ClassFilter(r);
        int offset = Int(r, "offset", 0, 0, int.MaxValue), limit = Int(r, "limit", 60, 1, 1000);
        var decisions = s.Decisions.Read();
        var rows = new List<object>();
        int total = 0;
        for (int p = 0; p < rank.Order.Length; p++)
        {
            int i = rank.Order[p];
            if (cls is { } c && s.Train.Labels[i] != c) continue;
            if (total >= offset && rows.Count < limit)
                rows.Add(new { rank = p + 1, score = rank.Scores[i], example = Row(s.Train, s.Predicted, i, decisions) });
            total++;
        }
        return Results.Json(new { method, total, offset, rows });
    }

    IResult TestList(HttpRequest r)
    {
        int? cls = ClassFilter(r);
        int offset = Int(r, "offset", 0, 0, int.MaxValue), limit = Int(r, "limit", 60, 1, 1000);
        var idx = Enumerable.Range(0, s.Test.Count).Where(i => cls is not { } c || s.Test.Labels[i] == c).ToList();
        return Results.Json(new { total = idx.Count, offset, rows = idx.Skip(offset).Take(limit).Select(i => Row(s.Test, s.TestPredicted, i, null)) });
    }

    IResult Image(string set, int index)
    {
        var data = s.QuerySet(set);
        if (index < 0 || index >= data.Count) return Results.Json(new { error = $"index {index}: outside the {set} set (0..{data.Count - 1})" }, statusCode: 404);
        var png = s.Png(data, index);
        return png is null ? Results.Json(new { error = "the run's data are not images" }, statusCode: 404) : Results.Bytes(png, "image/png");
    }

    async Task<IResult> Explain(HttpRequest r, CancellationToken ct)
    {
        string set = r.Query["set"].FirstOrDefault() ?? "train";
        int index = Int(r, "index", 0, 0, int.MaxValue), k = Int(r, "k", o.Top, 1, 500);
        var (result, method, source, secs) = await s.ExplainAsync(set, index, r.Query["method"].FirstOrDefault() is { Length: > 0 } m ? m : null, k, ct);
        var q = s.QuerySet(set);
        var decisions = s.Decisions.Read();
        object List(int[] idx, double[] sc) => idx.Zip(sc).Select(p => new { score = p.Second, example = Row(s.Train, s.Predicted, p.First, decisions) }).ToList();
        string predicted = set == "train" ? s.ClassNames[s.Predicted[index]] : set == "test" ? s.ClassNames[s.TestPredicted[index]] : s.ClassNames[q.Labels[index]];
        return Results.Json(new
        {
            method, source, seconds = secs, set, index,
            query = new { given = s.ClassNames[q.Labels[index]], predicted, source = SourceText.Of(q, index) },
            proponents = List(result.Proponents[0], result.ProponentScores[0]),
            opponents = List(result.Opponents[0], result.OpponentScores[0]),
        });
    }

    async Task<IResult> Upload(HttpRequest r, CancellationToken ct)
    {
        if (!s.HasImages) throw new InfluenceSharpException("the run's data are not images: nothing to upload");
        if (r.ContentLength is { } len && len > o.MaxUploadBytes)
            return Results.Json(new { error = $"upload of {len} bytes over the limit of {o.MaxUploadBytes} bytes (--max-upload)" }, statusCode: 413);
        using var ms = new MemoryStream();
        var buffer = new byte[81920];
        int n;
        while ((n = await r.Body.ReadAsync(buffer, ct)) > 0)
        {
            if (ms.Length + n > o.MaxUploadBytes)
                return Results.Json(new { error = $"upload over the limit of {o.MaxUploadBytes} bytes (--max-upload)" }, statusCode: 413);
            ms.Write(buffer, 0, n);
        }
        string name = r.Headers["X-File-Name"].FirstOrDefault() is { Length: > 0 and < 200 } f ? Path.GetFileName(f) : "upload";
        var (id, predicted) = await s.AddUploadAsync(ms.ToArray(), name, ct);
        return Results.Json(new { set = id, index = 0, predicted = s.ClassNames[predicted], name });
    }

    sealed record DecisionRequest(int Index, string Decision, string? Label);

    async Task<IResult> SetDecision(HttpRequest r)
    {
        DecisionRequest? d;
        try { d = await r.ReadFromJsonAsync<DecisionRequest>(); }
        catch (System.Text.Json.JsonException) { d = null; }
        catch (InvalidOperationException) { d = null; }
        if (d is null || d.Decision is null) throw new InfluenceSharpException("a decision is JSON {\"index\": I, \"decision\": \"remove|relabel|keep|clear\", \"label\": \"CLASS\"}");
        var saved = s.Decisions.Set(d.Index, d.Decision, d.Label);
        return Results.Json(new { saved, file = s.Decisions.Path });
    }

    /// <summary>A file of the run: inside RUN_DIR once links are resolved, no hidden file (locks, temps).</summary>
    Task RunFile(HttpContext c, string path) => SendFile(c, ResolveInside(s.Run.Dir, path));

    /// <summary>A file of the data set: only the image files the run's examples came from.</summary>
    Task DataFile(HttpContext c, string path) =>
        SendFile(c, s.DataFiles.TryGetValue(path.Replace('\\', '/'), out var full) && File.Exists(full) ? full : null);

    static string? ResolveInside(string root, string relative)
    {
        string rootFull = Path.TrimEndingDirectorySeparator(Path.GetFullPath(root));
        if (relative.Length == 0 || relative.Contains('\0') || relative.Split('/', '\\').Any(p => p is ".." || p.StartsWith('.'))) return null;
        string full = Path.GetFullPath(Path.Combine(rootFull, relative));
        if (!full.StartsWith(rootFull + Path.DirectorySeparatorChar, StringComparison.Ordinal) || !File.Exists(full)) return null;
        // A link inside the run that points outside it is not followed.
        var real = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? full;
        string? dir = Path.GetDirectoryName(real);
        while (dir is not null && dir.Length > rootFull.Length)
        {
            if (new DirectoryInfo(dir).LinkTarget is not null) return null;
            dir = Path.GetDirectoryName(dir);
        }
        return real.StartsWith(rootFull + Path.DirectorySeparatorChar, StringComparison.Ordinal) ? real : null;
    }

    static async Task SendFile(HttpContext c, string? full)
    {
        if (full is null) { await Error(c, 404, $"{c.Request.Path}: not a file of this run or its data set"); return; }
        string type = Path.GetExtension(full).ToLowerInvariant() switch
        {
            ".png" => "image/png", ".jpg" or ".jpeg" => "image/jpeg", ".bmp" => "image/bmp", ".gif" => "image/gif",
            ".json" => "application/json", ".csv" or ".txt" or ".md" => "text/plain; charset=utf-8",
            _ => "application/octet-stream",
        };
        c.Response.ContentType = type;
        await c.Response.SendFileAsync(full);
    }
}
