using Lifeline.ServiceDefaults.Security;

namespace Lifeline.Gateway.Security;

/// <summary>An authenticated caller: who (for logs and rate limits, never the secret), for which tenant, in which role.</summary>
/// <param name="Name">The API key's name or the JWT's subject.</param>
/// <param name="RateLimitKey">The caller's rate-limit bucket: <c>key:default-worker</c>, <c>jwt:alice</c>.</param>
internal sealed record Caller(string Name, string Tenant, Role Role, string RateLimitKey);

/// <summary>What the gateway learnt about the credential of the current request (set for every request).</summary>
internal sealed class CallerFeature
{
    /// <summary>The caller, when a valid credential was presented.</summary>
    public Caller? Caller { get; init; }

    /// <summary>Why a presented credential was not accepted; null when none was presented or it was accepted.</summary>
    public string? Rejection { get; init; }

    /// <summary>Whether the request carried a credential at all.</summary>
    public bool Presented { get; init; }
}
