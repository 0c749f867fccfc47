namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// Who a call acts as, read from its verified identity token: the subject (an API key's name, a JWT's
/// <c>sub</c>, or a service's name), the tenant it acts for, and its role.
/// </summary>
/// <param name="Tenant">The tenant the call acts for; null only for a service acting across tenants.</param>
/// <param name="Issuer">Who vouched for the caller: <c>lifeline-gateway</c> or the calling service.</param>
/// <param name="Expires">When the token stops being accepted.</param>
public sealed record CallerIdentity(string Subject, string? Tenant, Role Role, string Issuer, DateTimeOffset Expires);
