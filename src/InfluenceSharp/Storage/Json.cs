using System.Text.Json;
using System.Text.Json.Serialization;

namespace InfluenceSharp.Storage;

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
        try
        {
            return JsonSerializer.Deserialize<T>(File.ReadAllText(path), Options)
                   ?? throw new InfluenceSharpException($"{path}: empty JSON document");
        }
        catch (JsonException e)
        {
            throw new InfluenceSharpException($"{path}: not valid JSON for {typeof(T).Name}: {e.Message}", e);
        }
    }
}
