using System.Text.RegularExpressions;
using Grpc.Core;
using Lifeline.ServiceDefaults.Security;

namespace Lifeline.ServiceDefaults.Tenancy;

/// <summary>
/// The tenant a call acts for: the one its verified identity names (<see cref="CallerVerification"/>), which the
/// gateway takes from the caller's credential. Never read from a request body or a plain header, never a default.
/// </summary>
public static partial class Tenant
{
    /// <summary>The tenant of the call; a service identity acting across tenants has none and is refused here.</summary>
    public static string From(ServerCallContext context) =>
        context.Caller().Tenant
        ?? throw new Errors.PermissionDeniedException("TENANT_REQUIRED", "This call acts on one tenant's records; the caller's identity names no tenant.");

    /// <summary>Whether <paramref name="value"/> is a tenant id: 1 to 64 lowercase letters, digits, '-' and '_'.</summary>
    public static bool IsValid(string value) => ValidTenant().IsMatch(value);

    [GeneratedRegex("^[a-z0-9_-]{1,64}$")]
    private static partial Regex ValidTenant();
}
