// Both namespaces imported at once, as a user of TorchSharp's data utilities would: every data-set
// type of the library must still resolve (TorchSharp.Modules has a TensorDataset of its own: CS0104).
using InfluenceSharp.Data;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace InfluenceSharp.Tests.Data;

public class NamespaceTests
{
    [Fact]
    public void LibraryDataSetsDoNotCollideWithTorchSharpModules()
    {
        using var scope = NewDisposeScope();
        IDataset data = new TensorPairDataset(randn(4, 3), tensor(new long[] { 0, 1, 2, 1 }));
        Assert.Equal(4, data.Count);
        Assert.Equal(new long[] { 2, 3 }, data.Inputs(new[] { 1, 3 }).shape);
        Assert.True(typeof(TensorDataset).Namespace == "TorchSharp.Modules");   // TorchSharp's, unambiguous here
    }
}
