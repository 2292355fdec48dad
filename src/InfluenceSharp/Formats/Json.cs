using System.Text.Json;
using System.Text.Json.Serialization;

namespace InfluenceSharp.Formats;

/// <summary>One JSON convention for every manifest and sidecar: snake_case, indented, enums as strings.</summary>
public static class Json
{
    public static readonly JsonSerializerOptions Options = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DictionaryKeyPolicy = null,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    public static void WriteFile<T>(string path, T value) => AtomicFile.WriteAllText(path, Serialize(value) + "\n");

    public static T ReadFile<T>(string path)
    {
        if (!File.Exists(path)) throw new InfluenceSharpException($"{path}: file not found");
        string text = File.ReadAllText(path);
        try
        {
            return JsonSerializer.Deserialize<T>(text, Options)
                   ?? throw new InfluenceSharpException($"{path}: {What(typeof(T))} holds JSON null; restore the file or run again the command that wrote it");
        }
        catch (JsonException e)
        {
            throw new InfluenceSharpException($"{path}: damaged {What(typeof(T))}: {Why(typeof(T), text, e)}; restore the file or run again the command that wrote it", e);
        }
    }

    /// <summary>What kind of file a type is read from, in words.</summary>
    static string What(Type t) => t.Name switch
    {
        "CheckpointInfo" => "checkpoint record",
        "RunRecord" => "run record",
        "CorruptionRecord" => "label-corruption record",
        "CurationOutcome" => "curation result",
        _ when t.Name.EndsWith("Manifest", StringComparison.Ordinal) => "manifest",
        _ when t.IsGenericType && t.GetGenericArguments()[0].Name == "LdsRow" => "LDS results file",
        _ => $"JSON file ({t.Name})",
    };

    /// <summary>Why a document does not deserialise, in terms of the file (empty, cut short, not
    /// JSON, a missing or mistyped field) rather than the serializer's types.</summary>
    static string Why(Type t, string text, JsonException e)
    {
        if (string.IsNullOrWhiteSpace(text)) return "the file is empty (a write was interrupted, or it was emptied)";
        System.Text.Json.Nodes.JsonNode? root;
        try { root = System.Text.Json.Nodes.JsonNode.Parse(text); }
        catch (JsonException je)
        {
            long line = (je.LineNumber ?? 0) + 1;
            int lastLine = text.TrimEnd().Count(c => c == '\n') + 1;
            return line >= lastLine
                ? $"the JSON ends early at line {line} (the file is cut short)"
                : $"not valid JSON at line {line}, position {(je.BytePositionInLine ?? 0) + 1}";
        }
        bool wantsList = t != typeof(string) && typeof(System.Collections.IEnumerable).IsAssignableFrom(t);
        if (wantsList && root is not System.Text.Json.Nodes.JsonArray) return $"it holds a JSON {Kind(root)} where a list is expected";
        if (!wantsList && root is not System.Text.Json.Nodes.JsonObject) return $"it holds a JSON {Kind(root)} where an object is expected";
        if (root is System.Text.Json.Nodes.JsonObject obj)
        {
            var missing = t.GetProperties()
                .Where(p => p.IsDefined(typeof(System.Runtime.CompilerServices.RequiredMemberAttribute), true))
                .Select(p => Options.PropertyNamingPolicy!.ConvertName(p.Name))
                .Where(n => !obj.ContainsKey(n)).ToList();
            if (missing.Count > 0) return $"it lacks the field{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing)}";
        }
        string at = e.Path is { Length: > 1 } p2 ? p2.TrimStart('$').TrimStart('.') : "";
        return at.Length > 0 ? $"the field '{at}' has a value of the wrong kind" : "its content does not have the expected form";
    }

    static string Kind(System.Text.Json.Nodes.JsonNode? n) => n switch
    {
        null => "null",
        System.Text.Json.Nodes.JsonArray => "array",
        System.Text.Json.Nodes.JsonObject => "object",
        _ => n.GetValueKind() switch { JsonValueKind.String => "string", JsonValueKind.Number => "number", _ => "value" },
    };
}
