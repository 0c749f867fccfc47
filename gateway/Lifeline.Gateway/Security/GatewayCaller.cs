using System.Security.Claims;
using Lifeline.ServiceDefaults.Security;
using TenantIds = Lifeline.ServiceDefaults.Tenancy.Tenant;

namespace Lifeline.Gateway.Security;

/// <summary>
/// An authenticated caller: who (for logs and rate limits, never the secret), for which tenant, in which role.
/// Both authentication schemes produce the same <see cref="ClaimsPrincipal"/> (<see cref="ToPrincipal"/>);
/// <see cref="From"/> reads it back from <c>HttpContext.User</c>.
/// </summary>
/// <param name="Name">The API key's name or the JWT's subject.</param>
/// <param name="Credential">What the caller presented: <see cref="ApiKeyCredential"/> or <see cref="JwtCredential"/>.</param>
internal sealed record GatewayCaller(string Name, string Tenant, Role Role, string Credential)
{
    /// <summary>The credential kind (and the identity's authentication type) of an API key.</summary>
    public const string ApiKeyCredential = "api-key";

    /// <summary>The credential kind (and the identity's authentication type) of a JWT bearer token.</summary>
    public const string JwtCredential = "jwt";

    public const string NameClaim = "sub";
    public const string TenantClaim = "tenant";
    public const string RoleClaim = "role";

    /// <summary>The caller's rate-limit bucket: <c>api-key:default-worker</c>, <c>jwt:alice</c>.</summary>
    public string RateLimitKey => Credential + ":" + Name;

    /// <summary>The principal of this caller: claims <c>sub</c>, <c>tenant</c> and <c>role</c> (the role's name).</summary>
    public ClaimsPrincipal ToPrincipal() => new(new ClaimsIdentity(
        [new Claim(NameClaim, Name), new Claim(TenantClaim, Tenant), new Claim(RoleClaim, Role.Name())],
        Credential, NameClaim, RoleClaim));

    /// <returns>
    /// The caller <paramref name="user"/> names, or null when it is anonymous or not a gateway caller (no valid tenant,
    /// or a role no credential may hold).
    /// </returns>
    public static GatewayCaller? From(ClaimsPrincipal user)
    {
        if (user.Identity is not ClaimsIdentity { IsAuthenticated: true, AuthenticationType: ApiKeyCredential or JwtCredential } identity
            || identity.FindFirst(NameClaim)?.Value is not { Length: > 0 } name
            || identity.FindFirst(TenantClaim)?.Value is not { } tenant || !TenantIds.IsValid(tenant)
            || !Roles.TryParse(identity.FindFirst(RoleClaim)?.Value, out var role) || !Roles.CredentialRoles.Contains(role))
        {
            return null;
        }

        return new GatewayCaller(name, tenant, role, identity.AuthenticationType);
    }
}

internal static class GatewayCallerAccess
{
    /// <summary>The authenticated caller of this request, or null when it is anonymous.</summary>
    public static GatewayCaller? GetCaller(this HttpContext context) => GatewayCaller.From(context.User);
}
