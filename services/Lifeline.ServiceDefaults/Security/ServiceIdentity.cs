using Grpc.Core;

namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// The identity a service presents when it calls another: subject and issuer <c>lifeline-&lt;service&gt;</c>, role
/// <see cref="Role.Service"/>, acting for one tenant or across tenants. <see cref="Clients.IdentityPropagation"/> puts
/// it on every call of a service client.
/// </summary>
public sealed class ServiceIdentity(IdentityTokens tokens, string serviceName)
{
    public string Issuer { get; } = "lifeline-" + serviceName;

    /// <summary>The identity header of a call acting for <paramref name="tenant"/> (null: across tenants).</summary>
    public Metadata.Entry Header(string? tenant) => new(IdentityTokens.HeaderName, tokens.Mint(Issuer, tenant, Role.Service, Issuer));
}
