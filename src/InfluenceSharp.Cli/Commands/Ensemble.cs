using InfluenceSharp.Storage;
using InfluenceSharp.Training;
using static TorchSharp.torch;

namespace InfluenceSharp.Cli.Commands;

/// <summary>Independently trained models for TRAK's ensemble: the run's own final model plus models
/// retrained with the run's settings and seeds 1..N−1, cached under RUN_DIR/ensemble/seed-K.</summary>
internal static class Ensemble
{
    public static List<nn.Module<Tensor, Tensor>> Models(RunContext run, int count, bool quiet)
    {
        if (count < 1) throw new UsageException($"--ensemble {count}: must be at least 1");
        var models = new List<nn.Module<Tensor, Tensor>> { run.Last.LoadModel() };
        var baseOptions = run.Last.Info.Training ?? new TrainOptions();
        for (int k = 1; k < count; k++)
        {
            string dir = Path.Combine(run.Dir, "ensemble", $"seed-{baseOptions.Seed + k}");
            string final = Path.Combine(dir, $"epoch-{baseOptions.Epochs:D4}.safetensors");
            if (!File.Exists(final) || !File.Exists(Checkpoint.SidecarPath(final)))
            {
                if (!quiet) Console.Error.WriteLine($"training ensemble model {k + 1}/{count} (seed {baseOptions.Seed + k}) into {dir}");
                new Trainer(baseOptions with { Seed = baseOptions.Seed + k }).Train(run.Last.Info.Model, run.Data.Train, null, dir,
                    run.Data.Corruption, run.Data.Source);
            }
            var c = Checkpoint.Open(final);
            if (c.Info.DataFingerprint != run.Data.Train.Fingerprint())
                throw new InfluenceSharpException($"{final}: ensemble model was trained on other data; delete {Path.Combine(run.Dir, "ensemble")}");
            models.Add(c.LoadModel());
        }
        return models;
    }
}
