using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using InfluenceSharp.Bench;

// Usage: dotnet run -c Release --project bench/InfluenceSharp.Bench -- [all|CASE ...] [--n N]
// `all` runs every case in its own child process so that each reports its own peak memory, and
// measures the fp32 GEMM rate first so every throughput is compared against it in the same run.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
InfluenceSharp.Native.Allocator.KeepFreedMemory();   // as the CLI does
var cases = Cases.All;
var argv = args.ToList();
int n = 60000;
int ni = argv.IndexOf("--n");
if (ni >= 0) { n = int.Parse(argv[ni + 1], CultureInfo.InvariantCulture); argv.RemoveRange(ni, 2); }
if (argv.Count == 0 || argv[0] == "all") argv = cases.Keys.Where(k => !Cases.NotInAll.Contains(k)).ToList();
argv = argv.SelectMany(a => Cases.Groups.TryGetValue(a, out var g) ? g : new List<string> { a }).ToList();
var unknown = argv.Where(a => !cases.ContainsKey(a) && a != "--child").ToList();
if (unknown.Count > 0)
{
    Console.Error.WriteLine($"unknown case(s) {string.Join(", ", unknown)}; cases: {string.Join(", ", cases.Keys.Concat(Cases.Groups.Keys))}");
    return 2;
}
if (argv.Contains("--child"))
{
    var name = argv.First(a => a != "--child");
    foreach (var r in cases[name](new BenchContext(n))) Console.WriteLine("RESULT " + JsonSerializer.Serialize(r));
    return 0;
}

var results = new List<BenchResult>();
string self = Environment.ProcessPath!;
string dll = typeof(BenchResult).Assembly.Location;
foreach (var name in argv)
{
    Console.Error.WriteLine($"== {name}");
    var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet") psi.ArgumentList.Add(dll);
    foreach (var a in new[] { name, "--child", "--n", n.ToString(CultureInfo.InvariantCulture) }) psi.ArgumentList.Add(a);
    using var p = Process.Start(psi)!;
    string? line;
    while ((line = p.StandardOutput.ReadLine()) is not null)
    {
        if (line.StartsWith("RESULT ", StringComparison.Ordinal)) results.Add(JsonSerializer.Deserialize<BenchResult>(line[7..])!);
        else Console.WriteLine(line);
    }
    p.WaitForExit();
    if (p.ExitCode != 0) { Console.Error.WriteLine($"case {name} failed with exit code {p.ExitCode}"); return 1; }
}
double gemm = results.FirstOrDefault(r => r.Case == "gemm")?.GflopPerSec ?? double.NaN;
Console.WriteLine();
Console.WriteLine($"machine: {Environment.ProcessorCount} cores, torch threads {TorchSharp.torch.get_num_threads()}, fp32 GEMM {gemm:F1} GFLOP/s (measured in this run)");
Console.WriteLine("| case | stage | examples | seconds | examples/s | GFLOP | GFLOP/s | % of GEMM | peak RSS MiB | note |");
Console.WriteLine("|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
foreach (var r in results)
    Console.WriteLine($"| {r.Case} | {r.Stage} | {r.Examples} | {r.Seconds:F3} | {(r.Examples > 0 ? (r.Examples / r.Seconds).ToString("F0") : "")} | " +
                      $"{(r.Gflop > 0 ? r.Gflop.ToString("F1") : "")} | {(r.Gflop > 0 ? r.GflopPerSec.ToString("F1") : "")} | " +
                      $"{(r.Gflop > 0 && r.Case != "gemm" ? (100 * r.GflopPerSec / gemm).ToString("F0") + "%" : "")} | {r.PeakRssMiB:F0} | {r.Note} |");
return 0;
