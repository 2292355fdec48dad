namespace InfluenceSharp.Tests.Cli;

/// <summary>`demo --out DIR` never deletes another run in DIR/run unless told to.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class DemoOverwriteTests
{
    [Fact]
    public void DemoRefusesAnotherRunInItsRunDirectoryWithoutOverwrite()
    {
        using var dir = new TempDir();
        string run = Path.Combine(dir.Path, "run");
        Directory.CreateDirectory(run);
        string old = Path.Combine(run, "epoch-0001.safetensors");
        File.WriteAllText(old, "another run's checkpoint");
        var r = CliRunner.Run("demo", "--out", dir.Path, "--epochs", "1", "--quiet");
        Assert.Equal(1, r.Code);
        Assert.Contains("--overwrite", r.Err);
        Assert.True(File.Exists(old), "demo deleted another run's checkpoint");
        Assert.Equal("another run's checkpoint", File.ReadAllText(old));
    }
}
