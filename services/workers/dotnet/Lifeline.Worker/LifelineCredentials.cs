using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lifeline.Worker;

/// <summary>
/// The local development credentials the apphost writes to <c>&lt;data-dir&gt;/credentials.json</c>: the gateway's
/// addresses and named API keys (e.g. <c>default-worker</c>).
/// </summary>
public sealed class LifelineCredentials
{
    /// <summary>The gateway's gRPC address, e.g. <c>http://127.0.0.1:5100</c>.</summary>
    [JsonPropertyName("gateway_grpc")]
    public Uri? GatewayGrpc { get; init; }

    /// <summary>The gateway's REST address, e.g. <c>http://127.0.0.1:5180</c>.</summary>
    [JsonPropertyName("gateway_rest")]
    public Uri? GatewayRest { get; init; }

    /// <summary>The API keys.</summary>
    [JsonPropertyName("keys")]
    public IReadOnlyList<LifelineApiKey> Keys { get; init; } = [];

    /// <summary>Reads a credentials file.</summary>
    /// <param name="path">The file, e.g. <c>.lifeline/credentials.json</c>.</param>
    /// <exception cref="IOException">The file cannot be read.</exception>
    /// <exception cref="JsonException">The file is not a credentials document.</exception>
    public static LifelineCredentials Load(string path) =>
        JsonSerializer.Deserialize<LifelineCredentials>(File.ReadAllText(path))
        ?? throw new JsonException($"{path} is empty.");

    /// <summary>The key named <paramref name="name"/>.</summary>
    /// <exception cref="KeyNotFoundException">There is no such key; the message lists the ones there are.</exception>
    public LifelineApiKey Key(string name) =>
        Keys.FirstOrDefault(k => string.Equals(k.Name, name, StringComparison.Ordinal))
        ?? throw new KeyNotFoundException($"No key named '{name}' (there are: {string.Join(", ", Keys.Select(k => k.Name))}).");
}

/// <summary>One named API key of <see cref="LifelineCredentials"/>.</summary>
public sealed class LifelineApiKey
{
    /// <summary>The key's name, e.g. <c>default-worker</c>.</summary>
    [JsonPropertyName("name")]
    public string Name { get; init; } = "";

    /// <summary>The tenant the key acts for.</summary>
    [JsonPropertyName("tenant")]
    public string Tenant { get; init; } = "";

    /// <summary>The key's role: <c>worker</c>, <c>operator</c> or <c>reader</c>.</summary>
    [JsonPropertyName("role")]
    public string Role { get; init; } = "";

    /// <summary>The secret, sent as <c>authorization: Bearer &lt;key&gt;</c>.</summary>
    [JsonPropertyName("key")]
    public string Key { get; init; } = "";
}
