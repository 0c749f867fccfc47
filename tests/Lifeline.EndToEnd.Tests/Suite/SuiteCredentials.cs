using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lifeline.EndToEnd.Tests.Suite;

/// <summary>The apphost's <c>&lt;data-dir&gt;/credentials.json</c>: the gateway's addresses and named API keys.</summary>
public sealed class SuiteCredentials
{
    [JsonPropertyName("gateway_grpc")]
    public required Uri GatewayGrpc { get; init; }

    [JsonPropertyName("gateway_rest")]
    public required Uri GatewayRest { get; init; }

    [JsonPropertyName("keys")]
    public required IReadOnlyList<SuiteKey> Keys { get; init; }

    public static SuiteCredentials Load(string path) =>
        JsonSerializer.Deserialize<SuiteCredentials>(File.ReadAllText(path)) ?? throw new JsonException($"{path} is empty.");

    public SuiteKey Key(string name) =>
        Keys.FirstOrDefault(k => k.Name == name)
        ?? throw new KeyNotFoundException($"credentials.json has no key '{name}' (it has: {string.Join(", ", Keys.Select(k => k.Name))}).");
}

public sealed class SuiteKey
{
    [JsonPropertyName("name")]
    public required string Name { get; init; }

    [JsonPropertyName("tenant")]
    public required string Tenant { get; init; }

    [JsonPropertyName("role")]
    public required string Role { get; init; }

    [JsonPropertyName("key")]
    public required string Key { get; init; }
}

/// <summary>Names of the keys the apphost generates.</summary>
public static class Keys
{
    public const string PlatformAdmin = "platform-admin";
    public const string DefaultWorker = "default-worker";
    public const string DefaultOperator = "default-operator";
    public const string DefaultReader = "default-reader";
    public const string AcmeWorker = "acme-worker";
    public const string AcmeOperator = "acme-operator";
}
