using InfluenceSharp;
using InfluenceSharp.Cli;
using InfluenceSharp.Cli.Commands;

InfluenceSharp.Native.Allocator.KeepFreedMemory();
return Cli.Run(args);

namespace InfluenceSharp.Cli
{
    public static class Cli
    {
        public const string Usage = """
            influence — training-data attribution for TorchSharp models

            usage: influence <command> [options]

            commands:
              demo             the whole pipeline on the embedded data: train, detect mislabeled, explain, report
              train            train a model on a data set, checkpoint every epoch
              data subset      write a class-balanced IDX subset of a data set
              data info        describe a data set
              fit-factors      fit influence-function factors (identity, diagonal, kfac, ekfac)
              scores pairwise  influence of every training example on each query -> scores.npy
              scores self      self-influence of every training example -> self_influence.npy
              build-store      TracIn / TRAK training features computed once into RUN_DIR/store
              detect-mislabeled  rank training examples by self-influence; score against the corruption record
              explain          proponents and opponents of queries (streaming top-k) with image grids
              evaluate lds     linear datamodeling score of methods (retrains on random subsets, cached)
              evaluate remove  counterfactual removal of helpful / harmful / random examples, retrained
              report           one self-contained HTML page for a run (plots, tables, timings)

            common options:
              --data SPEC      embedded | auto | fashion-mnist | cifar10:DIR | DIR   (default depends on command)
              --help           show a command's options

            Run `influence <command> --help` for a command's options.
            """;

        /// <summary>Runs a command; returns the process exit code (0 ok, 1 error, 2 usage).</summary>
        public static int Run(string[] argv)
        {
            try
            {
                if (argv.Length == 0 || argv[0] is "--help" or "-h" or "help")
                {
                    Console.WriteLine(Usage);
                    return argv.Length == 0 ? 2 : 0;
                }
                if (argv[0] is "--version") { Console.WriteLine(LibraryInfo.Version); return 0; }
                string cmd = argv[0];
                var rest = argv.Skip(1).ToArray();
                if (cmd is "data" or "scores" or "evaluate" && rest.Length > 0 && !rest[0].StartsWith("--", StringComparison.Ordinal)) { cmd = cmd + " " + rest[0]; rest = rest.Skip(1).ToArray(); }
                var a = new Args(rest);
                return cmd switch
                {
                    "demo" => DemoCommand.Run(a),
                    "train" => TrainCommand.Run(a),
                    "data subset" => DataCommands.Subset(a),
                    "data info" => DataCommands.Info(a),
                    "fit-factors" => InfluenceCommands.FitFactors(a),
                    "scores pairwise" => InfluenceCommands.Scores(a, "pairwise"),
                    "scores self" => InfluenceCommands.Scores(a, "self"),
                    "build-store" => FeatureCommands.BuildStore(a),
                    "detect-mislabeled" => DetectCommand.Run(a),
                    "explain" => ExplainCommand.Run(a),
                    "evaluate lds" => EvaluateCommands.Lds(a),
                    "evaluate remove" => EvaluateCommands.Remove(a),
                    "report" => ReportCommand.Run(a),
                    _ => throw new UsageException($"unknown command '{cmd}'"),
                };
            }
            catch (UsageException e)
            {
                Console.Error.WriteLine($"influence: {e.Message}");
                Console.Error.WriteLine("Run `influence --help` for usage.");
                return 2;
            }
            catch (InfluenceSharpException e)
            {
                Console.Error.WriteLine($"influence: error: {e.Message}");
                return 1;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"influence: error: {e.Message}");
                return 1;
            }
            catch (Exception e)
            {
                Console.Error.WriteLine($"influence: internal error (please report): {e}");
                return 1;
            }
        }
    }
}
