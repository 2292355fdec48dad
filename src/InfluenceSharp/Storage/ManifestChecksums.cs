using System.Text.Json;
using System.Text.Json.Nodes;
using InfluenceSharp.Formats;

namespace InfluenceSharp.Storage;

/// <summary>The "checksums" map of a JSON manifest: artifact paths relative to the manifest's
/// directory ('/'-separated) → checksum. Entries are added before an artifact is renamed into place,
/// so every artifact a manifest covers has its entry.</summary>
public static class ManifestChecksums
{
    /// <summary>The JSON property (snake_case of the records' <c>Checksums</c>).</summary>
    public const string Property = "checksums";

    /// <summary>The map in a manifest file, or null when the manifest has none (written before
    /// checksums were recorded) or does not exist.</summary>
    public static Dictionary<string, string>? Read(string manifestPath)
    {
        if (!File.Exists(manifestPath)) return null;
        try
        {
            var node = JsonNode.Parse(File.ReadAllText(manifestPath)) as JsonObject;
            if (node?[Property] is not JsonObject map) return null;
            return map.ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? "", StringComparer.Ordinal);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InfluenceSharpException($"{manifestPath}: not a valid manifest ({e.Message})", e);
        }
    }

    /// <summary>Adds (or replaces) the checksum of <paramref name="relativePath"/> in the manifest,
    /// atomically. The caller holds the manifest lock (<see cref="OutputLock.Manifest"/>). A manifest
    /// without a map (an older one) is left as it is: its artifacts stay unverified alike.</summary>
    public static void Record(string manifestPath, string relativePath, string checksum)
    {
        if (!File.Exists(manifestPath)) throw new InfluenceSharpException($"{manifestPath}: manifest not found (the output was removed while being written?)");
        var node = JsonNode.Parse(File.ReadAllText(manifestPath)) as JsonObject
                   ?? throw new InfluenceSharpException($"{manifestPath}: not a valid manifest");
        if (node[Property] is not JsonObject map) return;
        map[relativePath] = checksum;
        node[Property] = Sorted(map.ToDictionary(kv => kv.Key, kv => kv.Value?.GetValue<string>() ?? "", StringComparer.Ordinal));
        AtomicFile.WriteAllText(manifestPath, node.ToJsonString(Json.Options) + "\n");
    }

    /// <summary>The map in file-name order, so that a manifest's bytes do not depend on the order in
    /// which (sharded) writers finished.</summary>
    public static JsonObject Sorted(IReadOnlyDictionary<string, string> map)
    {
        var o = new JsonObject();
        foreach (var kv in map.OrderBy(kv => kv.Key, StringComparer.Ordinal)) o[kv.Key] = kv.Value;
        return o;
    }

    /// <summary>The map as a dictionary in file-name order (for a manifest record's Checksums).</summary>
    public static Dictionary<string, string> SortedDictionary(IReadOnlyDictionary<string, string> map) =>
        map.OrderBy(kv => kv.Key, StringComparer.Ordinal).ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal);

    /// <summary>Takes the manifest lock of <paramref name="directory"/> and records a checksum.</summary>
    public static void RecordLocked(string directory, string manifestFile, string relativePath, string checksum, string what)
    {
        using var l = OutputLock.Manifest(directory, what);
        Record(Path.Combine(directory, manifestFile), relativePath, checksum);
    }

    /// <summary>The checksum an artifact must have: its entry in <paramref name="map"/>; null when the
    /// manifest predates checksums (<paramref name="map"/> null: unverified). An artifact missing from
    /// a map is refused (not written by this output's writers: copied in, or left by another job).</summary>
    public static string? Expected(Dictionary<string, string>? map, string relativePath, string artifactPath, string manifestPath)
    {
        if (map is null) return null;
        if (map.TryGetValue(relativePath, out var sum)) return sum;
        throw new InfluenceSharpException($"{artifactPath}: not recorded in {manifestPath} (left over from another job, or copied in?); delete it to recompute it");
    }
}
