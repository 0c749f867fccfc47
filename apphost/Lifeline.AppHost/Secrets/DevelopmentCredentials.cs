using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lifeline.AppHost.Secrets;

/// <summary>
/// The gateway's local development API keys: made at the first run (kept in secrets.json), handed to the gateway
/// as SHA-256 hashes only, printed at startup and written to <c>&lt;data dir&gt;/credentials.json</c> (0600) for
/// tools, workers and end-to-end tests.
/// </summary>
internal static class DevelopmentCredentials
{
    /// <summary>
    /// The keys every local suite has: each role for tenant <c>default</c>, a second tenant to show isolation, and a
    /// platform admin for what spans tenants (backups, disaster recovery, the suite's recovery views).
    /// </summary>
    public static readonly IReadOnlyList<(string Name, string Tenant, string Role)> Wanted =
    [
        ("platform-admin", "default", "platform-admin"),
        ("default-worker", "default", "worker"),
        ("default-operator", "default", "operator"),
        ("default-reader", "default", "reader"),
        ("acme-worker", "acme", "worker"),
        ("acme-operator", "acme", "operator"),
    ];

    /// <summary><c>Gateway__ApiKeys__{i}__Name/Tenant/Role/Sha256</c>: what the gateway needs, never a key itself.</summary>
    public static Dictionary<string, string> GatewayEnvironment(IReadOnlyList<ApiKeySecret> keys)
    {
        var environment = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < keys.Count; i++)
        {
            var prefix = string.Create(CultureInfo.InvariantCulture, $"Gateway__ApiKeys__{i}__");
            environment[prefix + "Name"] = keys[i].Name;
            environment[prefix + "Tenant"] = keys[i].Tenant;
            environment[prefix + "Role"] = keys[i].Role;
            environment[prefix + "Sha256"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(keys[i].Key)));
        }

        return environment;
    }

    public static void Write(string path, Uri gatewayGrpc, Uri gatewayRest, IReadOnlyList<ApiKeySecret> keys)
    {
        var document = new CredentialsDocument
        {
            GatewayGrpc = gatewayGrpc.ToString().TrimEnd('/'),
            GatewayRest = gatewayRest.ToString().TrimEnd('/'),
            Keys = [.. keys.Select(k => new CredentialsKey { Name = k.Name, Tenant = k.Tenant, Role = k.Role, Key = k.Key })],
        };
        SecretStore.WriteOwnerOnly(path, stream => JsonSerializer.Serialize(stream, document, CredentialsJsonContext.Default.CredentialsDocument));
    }

    /// <summary>Lines for the console: the gateway's addresses, each key with its tenant and role, and how to use one.</summary>
    public static IEnumerable<string> Describe(string path, Uri gatewayGrpc, Uri gatewayRest, IReadOnlyList<ApiKeySecret> keys)
    {
        yield return $"gateway: gRPC {gatewayGrpc.ToString().TrimEnd('/')} (HTTP/2 cleartext), REST {gatewayRest.ToString().TrimEnd('/')} (HTTP/1.1)";
        yield return $"gateway API keys (local development; also in {path}):";
        foreach (var key in keys)
        {
            yield return $"  {key.Name,-18} tenant {key.Tenant,-8} role {key.Role,-14} {key.Key}";
        }

        var worker = keys.FirstOrDefault(k => k.Role == "worker")?.Key ?? "<key>";
        yield return $"  grpcurl -plaintext -H 'authorization: Bearer {worker}' {gatewayGrpc.Authority} lifeline.queue.v1.QueueService/GetQueueStats";
        yield return $"  curl -H 'authorization: Bearer {worker}' {gatewayRest.ToString().TrimEnd('/')}/api/v1/queue/stats";
    }
}

internal sealed class CredentialsDocument
{
    public string GatewayGrpc { get; set; } = "";

    public string? GatewayRest { get; set; }

    public List<CredentialsKey> Keys { get; set; } = [];
}

internal sealed class CredentialsKey
{
    public string Name { get; set; } = "";

    public string Tenant { get; set; } = "";

    public string Role { get; set; } = "";

    public string Key { get; set; } = "";
}

[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(CredentialsDocument))]
internal sealed partial class CredentialsJsonContext : JsonSerializerContext;
