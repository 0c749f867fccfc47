using Lifeline.ServiceDefaults.Security;
using System.Security.Cryptography;
using System.Text;
using Lifeline.Gateway.Options;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Security;

/// <summary>The configured API keys, by SHA-256 of the key: the gateway never holds a key itself.</summary>
internal sealed class ApiKeyStore
{
    private readonly Dictionary<string, Caller> _byHash;

    public ApiKeyStore(IOptions<GatewayOptions> options)
    {
        _byHash = options.Value.ApiKeys.ToDictionary(
            k => k.Sha256.ToLowerInvariant(),
            k => new Caller(k.Name, k.Tenant, Roles.TryParse(k.Role, out var role) ? role : Role.Reader, "key:" + k.Name),
            StringComparer.Ordinal);
    }

    public int Count => _byHash.Count;

    public Caller? Find(string key) => _byHash.GetValueOrDefault(Hash(key));

    /// <summary>Lowercase hex SHA-256 of the key's UTF-8 bytes, as configured in <c>Gateway:ApiKeys:n:Sha256</c>.</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
