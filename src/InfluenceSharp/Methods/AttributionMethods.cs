using System.Reflection;
using InfluenceSharp.Runs;

namespace InfluenceSharp.Methods;

/// <summary>
/// The registry of attribution methods by name. The library's own <see cref="MethodDescriptor"/>
/// classes are found by reflection (a new method is one new descriptor class); another assembly adds
/// its methods with <see cref="Register"/> or <see cref="RegisterAssembly"/>, after which the command
/// line offers them like the library's.
/// </summary>
/// <example><code>
/// var run = Run.Open("runs/demo/run");
/// var ekfac = AttributionMethods.Create("ekfac", run);            // the command line's defaults
/// var scores = ekfac.PairwiseMatrix(run.Data.Test, run.Data.Train);
/// </code></example>
public static class AttributionMethods
{
    static readonly object gate = new();
    static List<MethodDescriptor>? builtIn;
    static readonly List<MethodDescriptor> added = new();
    static readonly HashSet<Assembly> scanned = new();

    /// <summary>Every method, in listing order.</summary>
    public static IReadOnlyList<MethodDescriptor> All
    {
        get
        {
            lock (gate)
            {
                builtIn ??= Discover(typeof(AttributionMethods).Assembly);
                return builtIn.Concat(added).OrderBy(d => d.Order).ThenBy(d => d.Name, StringComparer.Ordinal).ToList();
            }
        }
    }

    /// <summary>Every method's name, in listing order.</summary>
    public static IReadOnlyList<string> Names => All.Select(d => d.Name).ToList();

    /// <summary>The method of that name, or null.</summary>
    public static MethodDescriptor? Find(string name) => All.FirstOrDefault(d => d.Name == name);

    /// <summary>The method of that name; throws, listing the methods, when there is none.</summary>
    public static MethodDescriptor Get(string name) => Find(name)
        ?? throw new InfluenceSharpException($"unknown method {name} (choose {string.Join(", ", Names)})");

    /// <summary>Builds a method by name for a run (null settings: the defaults every command uses).</summary>
    public static IAttributionMethod Create(string name, Run run, MethodSettings? settings = null, MethodContext? context = null)
    {
        var d = Get(name);
        var s = settings ?? new MethodSettings();
        if (d.Check(s) is { } why) throw new InfluenceSharpException($"{name}: {why}");
        return d.Build(run, s, context ?? MethodContext.Silent);
    }

    /// <summary>Adds a method; disposing the result removes it again. Refuses a name already taken.</summary>
    public static IDisposable Register(MethodDescriptor descriptor)
    {
        ArgumentNullException.ThrowIfNull(descriptor);
        lock (gate)
        {
            if (Find(descriptor.Name) is not null) throw new InfluenceSharpException($"method {descriptor.Name}: a method of that name is already registered");
            added.Add(descriptor);
        }
        return new Registration(descriptor);
    }

    /// <summary>Adds every public non-abstract <see cref="MethodDescriptor"/> class of an assembly
    /// (each needs a parameterless constructor); an assembly is scanned once.</summary>
    public static void RegisterAssembly(Assembly assembly)
    {
        lock (gate)
        {
            if (assembly == typeof(AttributionMethods).Assembly || !scanned.Add(assembly)) return;
            foreach (var d in Discover(assembly)) Register(d);
        }
    }

    static List<MethodDescriptor> Discover(Assembly assembly) =>
        assembly.GetTypes()
            .Where(t => t.IsClass && !t.IsAbstract && typeof(MethodDescriptor).IsAssignableFrom(t) && t.GetConstructor(Type.EmptyTypes) is not null
                && (assembly != typeof(AttributionMethods).Assembly || t.IsPublic || t.IsNestedPublic))
            .Select(t => (MethodDescriptor)Activator.CreateInstance(t)!)
            .ToList();

    sealed class Registration(MethodDescriptor descriptor) : IDisposable
    {
        public void Dispose() { lock (gate) added.Remove(descriptor); }
    }
}
