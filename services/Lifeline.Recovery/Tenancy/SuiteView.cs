using Grpc.Core;
using Lifeline.ServiceDefaults.Security;
using Lifeline.ServiceDefaults.Tenancy;

namespace Lifeline.Recovery.Tenancy;

/// <summary>
/// How far a caller sees recovery's records of what it did (actions, statistics): a platform admin or a service
/// sees the whole suite, any other caller its own tenant only. Recovery plans are not among these: they belong to one
/// tenant and every caller acts on its own tenant's (<see cref="Tenant.From"/>).
/// </summary>
public static class SuiteView
{
    /// <summary>The tenant the caller's view is limited to; null when its role spans tenants (the whole suite).</summary>
    public static string? TenantOf(ServerCallContext context) =>
        context.Caller().Role.SpansTenants() ? null : Tenant.From(context);
}
