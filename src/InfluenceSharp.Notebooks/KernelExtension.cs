using Microsoft.DotNet.Interactive;

namespace InfluenceSharp.Notebooks;

/// <summary>Loaded by .NET Interactive when the package is referenced (`#r "nuget: InfluenceSharp.Notebooks"`;
/// the package carries this assembly under interactive-extensions/dotnet): registers the formatters
/// and, where needed, makes TorchSharp's native library loadable (see <see cref="TorchNative"/>).</summary>
public sealed class KernelExtension : IKernelExtension
{
    public Task OnLoadAsync(Kernel kernel)
    {
        Notebook.RegisterFormatters();
        TorchNative.Prepare();
        return Task.CompletedTask;
    }
}
