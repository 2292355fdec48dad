namespace InfluenceSharp.Tests.Cli;

/// <summary>What a new user gets from the command line itself: "did you mean" for a mistyped command
/// or option, `influence help [command]`, and help pages that give each default once.</summary>
[Collection("cli")]   // Console redirection is process-wide
public class CliHelpTests
{
    [Theory]
    [InlineData("trian", "'trian': did you mean 'train'?")]
    [InlineData("detect-mislabelled", "did you mean 'detect-mislabeled'?")]
    [InlineData("train --epoch 3 --out x", "'--epoch': did you mean '--epochs'?")]
    [InlineData("scores self --methdos ekfac", "did you mean '--methods'?")]
    [InlineData("evaluate lsd", "did you mean 'lds'?")]
    public void MistypedCommandsAndOptionsGetASuggestion(string line, string expected)
    {
        using var dir = new TempDir();
        string cwd = Directory.GetCurrentDirectory();
        Directory.SetCurrentDirectory(dir.Path);
        try
        {
            var r = CliRunner.Run(line.Split(' '));
            Assert.Equal(2, r.Code);
            Assert.Contains(expected, r.Err);
            Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
        }
        finally { Directory.SetCurrentDirectory(cwd); }
    }

    [Fact]
    public void AnUnrelatedWordGetsNoSuggestion()
    {
        var r = CliRunner.Run("photosynthesis");
        Assert.Equal(2, r.Code);
        Assert.DoesNotContain("did you mean", r.Err);
    }

    [Theory]
    [InlineData("train")]
    [InlineData("scores pairwise")]
    [InlineData("evaluate")]
    public void HelpCommandShowsTheCommandsHelp(string path)
    {
        var viaHelp = CliRunner.Run(new[] { "help" }.Concat(path.Split(' ')).ToArray());
        var viaOption = CliRunner.Run(path.Split(' ').Append("--help").ToArray());
        Assert.Equal(0, viaHelp.Code);
        Assert.Equal(viaOption.Out, viaHelp.Out);
        Assert.Contains("Usage:", viaHelp.Out);
        Assert.Contains(path.Split(' ')[^1], viaHelp.Out);
    }

    [Fact]
    public void HelpWithoutACommandListsTheCommands()
    {
        var r = CliRunner.Run("help");
        Assert.Equal(0, r.Code);
        Assert.Contains("detect-mislabeled", r.Out);
        Assert.Contains("help", r.Out);
    }

    [Fact]
    public void HelpOfAnUnknownCommandSuggests()
    {
        var r = CliRunner.Run("help", "trian");
        Assert.Equal(2, r.Code);
        Assert.Contains("help: 'trian' is not a command of influence; did you mean 'train'?", r.Err);
        r = CliRunner.Run("help", "scores", "pairwize");
        Assert.Equal(2, r.Code);
        Assert.Contains("did you mean 'pairwise'?", r.Err);
    }

    /// <summary>Every option row of every help page says its default at most once.</summary>
    [Fact]
    public void NoHelpPageGivesADefaultTwice()
    {
        var bad = new List<string>();
        foreach (var (path, command) in CliRunner.AllCommands())
        {
            if (command.Action is null || path.Length == 0) continue;
            var r = CliRunner.Run(path.Split(' ').Append("--help").ToArray());
            Assert.Equal(0, r.Code);
            // Help wraps long rows; an option's row runs until the next line starting with "  -".
            var rows = System.Text.RegularExpressions.Regex.Split(r.Out, @"\n(?=\s{2}-)");
            foreach (var row in rows)
            {
                int n = System.Text.RegularExpressions.Regex.Matches(row, @"\[default:").Count;
                if (n > 1) bad.Add($"influence {path}: {row.Trim().Split('\n')[0]}");
            }
        }
        Assert.True(bad.Count == 0, string.Join("\n", bad));
    }
}
