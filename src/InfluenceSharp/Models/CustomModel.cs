using System.Reflection;
using System.Runtime.Loader;
using static TorchSharp.torch;

namespace InfluenceSharp.Models;

/// <summary>
/// A user's own TorchSharp module, named as <c>path/to/MyModels.dll:Namespace.Type</c>. The type must
/// derive from <c>nn.Module&lt;Tensor, Tensor&gt;</c> and have either a public constructor taking the
/// class count (<c>int numClasses</c>) or a public static <c>Create(int numClasses)</c> factory
/// returning the module. Its tracked layers (Linear, Conv2d) must be invoked with <c>.call(x)</c> in
/// forward so that forward hooks fire, and its parameter names are those of its module tree (as in
/// PyTorch). The assembly is loaded into the default AssemblyLoadContext (so it shares TorchSharp with
/// the library); its own dependencies are looked up beside it.
/// </summary>
public sealed record CustomModel(string AssemblyPath, string TypeName)
{
    public override string ToString() => AssemblyPath + ":" + TypeName;

    /// <summary>True when <paramref name="architecture"/> names an assembly and a type rather than a
    /// built-in architecture.</summary>
    public static bool IsCustom(string? architecture) =>
        architecture is not null && architecture.LastIndexOf(':') is int i && i > 0
        && architecture[..i].EndsWith(".dll", StringComparison.OrdinalIgnoreCase);

    /// <summary>Parses <c>path.dll:Namespace.Type</c>; the path is made absolute (it is recorded in
    /// checkpoint sidecars, which later commands read from other directories).</summary>
    public static CustomModel Parse(string architecture, string option)
    {
        int i = architecture.LastIndexOf(':');
        if (i <= 0 || i == architecture.Length - 1)
            throw new InfluenceSharpException($"{option} {architecture}: expected path/to/Models.dll:Namespace.Type");
        string path = Path.GetFullPath(architecture[..i]);
        return new CustomModel(path, architecture[(i + 1)..]);
    }

    private static readonly object Gate = new();
    private static readonly HashSet<string> ResolverDirs = new(StringComparer.Ordinal);

    /// <summary>Loads the assembly (once per process) and finds the type.</summary>
    public Type ResolveType()
    {
        if (!File.Exists(AssemblyPath))
            throw new InfluenceSharpException($"--model {this}: assembly not found: {AssemblyPath}");
        Assembly asm;
        lock (Gate)
        {
            string dir = Path.GetDirectoryName(AssemblyPath)!;
            if (ResolverDirs.Add(dir))
                AssemblyLoadContext.Default.Resolving += (ctx, name) =>
                {
                    string candidate = Path.Combine(dir, name.Name + ".dll");
                    return File.Exists(candidate) ? ctx.LoadFromAssemblyPath(candidate) : null;
                };
            // An assembly already loaded from this path (e.g. the application's own) is reused.
            asm = AppDomain.CurrentDomain.GetAssemblies().FirstOrDefault(a => !a.IsDynamic && string.Equals(a.Location, AssemblyPath, StringComparison.Ordinal))
                  ?? LoadAssembly();
        }
        var type = asm.GetType(TypeName, throwOnError: false)
            ?? throw new InfluenceSharpException($"--model {this}: no public type '{TypeName}' in {Path.GetFileName(AssemblyPath)}");
        return type;
    }

    Assembly LoadAssembly()
    {
        try { return AssemblyLoadContext.Default.LoadFromAssemblyPath(AssemblyPath); }
        catch (Exception e) when (e is BadImageFormatException or FileLoadException)
        {
            throw new InfluenceSharpException($"--model {this}: cannot load {AssemblyPath}: {e.Message}");
        }
    }

    /// <summary>Builds a fresh module with <paramref name="numClasses"/> outputs (uses torch's global
    /// generator: seed it first).</summary>
    public nn.Module<Tensor, Tensor> Create(int numClasses)
    {
        var type = ResolveType();
        object? made;
        try
        {
            if (type.GetMethod("Create", BindingFlags.Public | BindingFlags.Static, new[] { typeof(int) }) is { } factory
                && typeof(nn.Module<Tensor, Tensor>).IsAssignableFrom(factory.ReturnType))
                made = factory.Invoke(null, new object[] { numClasses });
            else if (!typeof(nn.Module<Tensor, Tensor>).IsAssignableFrom(type))
                throw new InfluenceSharpException($"--model {this}: {TypeName} is not an nn.Module<Tensor, Tensor> and has no public static Create(int numClasses) returning one");
            else if (type.GetConstructor(new[] { typeof(int) }) is { } ctor)
                made = ctor.Invoke(new object[] { numClasses });
            else
                throw new InfluenceSharpException($"--model {this}: {TypeName} needs a public constructor ({type.Name}(int numClasses)) or a public static Create(int numClasses)");
        }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            throw new InfluenceSharpException($"--model {this}: building the model failed: {e.InnerException.Message}");
        }
        return made as nn.Module<Tensor, Tensor>
            ?? throw new InfluenceSharpException($"--model {this}: Create({numClasses}) returned null");
    }
}
