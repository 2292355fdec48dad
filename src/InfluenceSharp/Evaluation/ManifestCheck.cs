using System.Text.Json;
using InfluenceSharp.Storage;

namespace InfluenceSharp.Evaluation;

/// <summary>Compares a stored manifest with the one a run would write and names the first field
/// that differs (nested fields as "training.learning_rate").</summary>
internal static class ManifestCheck
{
    public static void RequireSame<T>(string path, T expected, params string[] ignored)
    {
        using var stored = JsonDocument.Parse(File.ReadAllText(path));
        using var wanted = JsonDocument.Parse(Json.Serialize(expected));
        var diff = FirstDifference(stored.RootElement, wanted.RootElement, "", ignored);
        if (diff is not null)
            throw new InfluenceSharpException(
                $"{path}: this cache was made with other settings: field '{diff.Value.Field}' is {diff.Value.Stored} there but {diff.Value.Wanted} now (use another directory, or the same settings)");
    }

    private static (string Field, string Stored, string Wanted)? FirstDifference(JsonElement a, JsonElement b, string prefix, string[] ignored)
    {
        if (a.ValueKind == JsonValueKind.Object && b.ValueKind == JsonValueKind.Object)
        {
            var names = a.EnumerateObject().Select(p => p.Name).Union(b.EnumerateObject().Select(p => p.Name));
            foreach (var name in names)
            {
                string field = prefix.Length == 0 ? name : prefix + "." + name;
                if (ignored.Contains(field)) continue;
                bool inA = a.TryGetProperty(name, out var va), inB = b.TryGetProperty(name, out var vb);
                if (!inA || !inB) return (field, inA ? va.GetRawText() : "absent", inB ? vb.GetRawText() : "absent");
                var d = FirstDifference(va, vb, field, ignored);
                if (d is not null) return d;
            }
            return null;
        }
        if (a.ValueKind == JsonValueKind.Number && b.ValueKind == JsonValueKind.Number)
            return a.GetDouble() == b.GetDouble() ? null : (prefix, a.GetRawText(), b.GetRawText());
        string ra = a.GetRawText(), rb = b.GetRawText();
        if (a.ValueKind == JsonValueKind.Array && b.ValueKind == JsonValueKind.Array)
        {
            ra = JsonSerializer.Serialize(a); rb = JsonSerializer.Serialize(b); // canonical whitespace
        }
        return ra == rb ? null : (prefix, ra, rb);
    }
}
