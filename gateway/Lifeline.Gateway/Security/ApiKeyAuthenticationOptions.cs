using Lifeline.Gateway.Options;
using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Authentication;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Security;

/// <summary>The API key scheme's settings: the configured keys by their SHA-256, never a key itself.</summary>
internal sealed class ApiKeyAuthenticationOptions : AuthenticationSchemeOptions
{
    /// <summary>The caller each key stands for, by the lowercase hex SHA-256 of the key's UTF-8 bytes.</summary>
    public IReadOnlyDictionary<string, GatewayCaller> CallersBySha256 { get; set; } = new Dictionary<string, GatewayCaller>();
}

/// <summary>Fills <see cref="ApiKeyAuthenticationOptions"/> from <c>Gateway:ApiKeys</c> (validated at start).</summary>
internal sealed class ApiKeyAuthenticationSetup(IOptions<GatewayOptions> gateway) : IConfigureNamedOptions<ApiKeyAuthenticationOptions>
{
    public void Configure(string? name, ApiKeyAuthenticationOptions options)
    {
        if (name != GatewayAuthentication.ApiKeyScheme)
        {
            return;
        }

        var callers = new Dictionary<string, GatewayCaller>(StringComparer.Ordinal);
        foreach (var key in gateway.Value.ApiKeys)
        {
            // GatewayOptionsValidator stops the gateway on a bad key; a key that slipped through grants nothing.
            if (Roles.TryParse(key.Role, out var role) && Roles.CredentialRoles.Contains(role))
            {
                callers.TryAdd(key.Sha256.ToLowerInvariant(), new GatewayCaller(key.Name, key.Tenant, role, GatewayCaller.ApiKeyCredential));
            }
        }

        options.CallersBySha256 = callers;
    }

    public void Configure(ApiKeyAuthenticationOptions options) => Configure(Microsoft.Extensions.Options.Options.DefaultName, options);
}
