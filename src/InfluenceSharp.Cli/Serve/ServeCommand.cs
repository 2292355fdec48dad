using System.CommandLine;
using System.Globalization;
using InfluenceSharp.Cli.CommandLine;
using InfluenceSharp.Cli.Commands;
using InfluenceSharp.Methods;

namespace InfluenceSharp.Cli.Serve;

/// <summary>`influence serve`: a local web page to browse one run: the self-influence ranking with
/// images, labels and sources; proponents and opponents of any example, test point or uploaded
/// image; decisions (relabel, remove, keep) saved to RUN_DIR/decisions.csv for `data clean`.</summary>
public static class ServeCommand
{
    public static Command Command()
    {
        var run = Opt.Run();
        var methods = Opt.Str("--methods", "self-influence rankings to browse, comma separated: detect-mislabeled results in RUN_DIR/detect (self_influence-M.npy) or methods to compute in memory " +
            $"({string.Join(", ", MethodFactory.Names)}) [default: every result in RUN_DIR/detect, else {MethodFactory.Defaults(MethodRole.Detection)}]", "M,...", aliases: "--method");
        var explain = Opt.Str("--explain-method", "the method for proponents and opponents when the chosen ranking is not itself a method", "M", fallback: MethodFactory.Defaults(MethodRole.Explorer));
        var host = Opt.Str("--host", "address to listen on; anything but loopback (e.g. 0.0.0.0) needs --token", "ADDRESS", fallback: "127.0.0.1");
        var port = Opt.Int("--port", "port to listen on (0: a free one)", 8770, 0, 65535);
        var token = Opt.Str("--token", "a secret every request must carry (open the printed address with ?token=...); required with a non-loopback --host", "SECRET");
        var maxUpload = Opt.Int("--max-upload", "largest query image accepted, in KiB", 4096, 1, 1 << 20, "KIB");
        var top = Opt.Int("--top", "proponents and opponents listed per query", 16, 1, 500, "K");
        var data = Opt.RunData();
        var compute = new ComputeOptions();
        var cmd = new Command("serve", "browse a run in a local web page: self-influence ranking with images, proponents/opponents of a click or an uploaded image, decisions saved for `data clean`")
        {
            run, methods, explain, host, port, token, maxUpload, top, data,
        };
        compute.AddTo(cmd);
        cmd.Validators.Add(r =>
        {
            if (Opt.ValueIfValid(r, explain) is { } e && !MethodFactory.Names.Contains(e))
                r.AddError($"--explain-method {e}: unknown method (choose {string.Join(", ", MethodFactory.Names)})");
            if (Opt.ValueIfValid(r, token) is { } t && t.Length < 8) r.AddError("--token: at least 8 characters");
        });
        cmd.SetAction(async (p, ct) =>
        {
            bool quiet = compute.Apply(p);
            var o = new ServeOptions
            {
                RunDir = p.GetValue(run)!, DataSpec = p.GetValue(data),
                Methods = p.GetValue(methods)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                ExplainMethod = p.GetValue(explain)!, Host = p.GetValue(host)!, Port = p.GetValue(port), Token = p.GetValue(token),
                MaxUploadBytes = p.GetValue(maxUpload) * 1024L, Top = p.GetValue(top),
            };
            await using var server = await ServeServer.StartAsync(o, quiet ? null : Console.Error.WriteLine);
            string url = server.Address + (o.Token is { } tk ? "?token=" + Uri.EscapeDataString(tk) : "");
            Console.WriteLine($"influence serve: {Path.GetFullPath(o.RunDir)} at {url}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"decisions go to {Path.Combine(Path.GetFullPath(o.RunDir), DecisionsFile.FileName)}; Ctrl+C stops"));
            Console.Out.Flush();
            try { await server.WaitForShutdownAsync(ct); }
            catch (OperationCanceledException) { }
            return 0;
        });
        return cmd;
    }
}
