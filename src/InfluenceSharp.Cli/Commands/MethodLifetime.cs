using InfluenceSharp.Methods;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Frees what an attribution method holds (factors, kernel inverses, models, projections)
/// as soon as a command is done with it, before the next method of the same command is built.
/// Libtorch memory of tensors that are not disposed is only returned when the garbage collector
/// finalises them, which a process with little managed allocation may not do for a long time: a
/// command running several methods in turn would hold every earlier method's tensors.</summary>
internal static class MethodLifetime
{
    public static void Release(IAttributionMethod? method)
    {
        (method as IDisposable)?.Dispose();
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }
}
