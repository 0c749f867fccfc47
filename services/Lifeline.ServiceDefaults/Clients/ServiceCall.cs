using Grpc.Core;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>
/// The call options of a call to another Lifeline service: it acts for one tenant (<see cref="For"/>) or across
/// tenants (<see cref="AcrossTenants"/>). <see cref="IdentityPropagation"/> turns that into the signed identity header;
/// the tenant marker (<see cref="ActingForKey"/>) never leaves the process. Without a <c>timeout</c> the call gets the
/// default deadline (<see cref="Grpc.DefaultDeadline.ForServices"/>: 30 s for unary calls, 1 h for streams).
/// </summary>
public static class ServiceCall
{
    /// <summary>The client-side marker naming the tenant a call acts for; <see cref="IdentityPropagation"/> replaces it.</summary>
    public const string ActingForKey = "x-lifeline-acting-for";

    /// <summary>Call options acting for <paramref name="tenant"/>, with a deadline <paramref name="timeout"/> from now (or the default).</summary>
    public static CallOptions For(string tenant, CancellationToken ct, TimeSpan? timeout = null) =>
        new(new Metadata { { ActingForKey, tenant } }, Deadline(timeout), ct);

    /// <summary>Call options acting across tenants (e.g. <c>ListActiveTenants</c>), with a deadline <paramref name="timeout"/> from now (or the default).</summary>
    public static CallOptions AcrossTenants(CancellationToken ct, TimeSpan? timeout = null) => new(null, Deadline(timeout), ct);

    private static DateTime? Deadline(TimeSpan? timeout) => timeout is { } t ? DateTime.UtcNow + t : null;
}
