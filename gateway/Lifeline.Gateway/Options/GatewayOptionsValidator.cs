using Lifeline.ServiceDefaults.Security;
using System.Net;
using System.Text;
using System.Text.RegularExpressions;
using Lifeline.ServiceDefaults.Tenancy;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.Options;

/// <summary>What data annotations cannot say: endpoints, each API key, the JWT key. Every message names the setting.</summary>
internal sealed partial class GatewayOptionsValidator : IValidateOptions<GatewayOptions>
{
    public ValidateOptionsResult Validate(string? name, GatewayOptions options)
    {
        var failures = new List<string>();
        foreach (var (setting, value) in new[] { ("GrpcEndpoint", options.GrpcEndpoint), ("RestEndpoint", options.RestEndpoint) })
        {
            if (!IPEndPoint.TryParse(value ?? "", out var endpoint) || endpoint.Port is < 0 or > 65535)
            {
                failures.Add($"Gateway:{setting} '{value}' is not an IP endpoint such as 127.0.0.1:5100.");
            }
        }

        if (options.GrpcEndpoint == options.RestEndpoint && !options.GrpcEndpoint.EndsWith(":0", StringComparison.Ordinal))
        {
            failures.Add("Gateway:GrpcEndpoint and Gateway:RestEndpoint must differ (HTTP/2 cleartext and HTTP/1.1 need a port each).");
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var hashes = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < options.ApiKeys.Count; i++)
        {
            var key = options.ApiKeys[i];
            var setting = $"Gateway:ApiKeys:{i}";
            if (string.IsNullOrWhiteSpace(key.Name) || !names.Add(key.Name))
            {
                failures.Add($"{setting}:Name must be set and unique.");
            }

            if (!Tenant.IsValid(key.Tenant ?? ""))
            {
                failures.Add($"{setting}:Tenant '{key.Tenant}' must be 1 to 64 characters of lowercase letters, digits, '-' and '_'.");
            }

            if (!Roles.TryParse(key.Role, out var role) || !Roles.CredentialRoles.Contains(role))
            {
                failures.Add($"{setting}:Role '{key.Role}' must be reader, worker, operator or platform-admin.");
            }

            if (!Sha256Pattern().IsMatch(key.Sha256 ?? "") || !hashes.Add(key.Sha256!.ToLowerInvariant()))
            {
                failures.Add($"{setting}:Sha256 must be a unique 64-character hex SHA-256 of the key.");
            }
        }

        if (options.Jwt.SigningKey.Length > 0 && Encoding.UTF8.GetByteCount(options.Jwt.SigningKey) < 32)
        {
            failures.Add("Gateway:Jwt:SigningKey must be at least 32 bytes (HS256).");
        }

        if (options.RateLimit.PermitsPerSecond > 0 && options.RateLimit.Burst < 1)
        {
            failures.Add("Gateway:RateLimit:Burst must be at least 1.");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    [GeneratedRegex("^[0-9a-fA-F]{64}$")]
    private static partial Regex Sha256Pattern();
}
