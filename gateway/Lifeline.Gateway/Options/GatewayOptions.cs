using System.ComponentModel.DataAnnotations;

namespace Lifeline.Gateway.Options;

/// <summary>Settings of the gateway (section <c>Gateway</c>), validated at start.</summary>
public sealed class GatewayOptions
{
    public const string Section = "Gateway";

    /// <summary>Where gRPC (and REST over HTTP/2) is served, cleartext HTTP/2: <c>127.0.0.1:5100</c>. Port 0 picks a free one.</summary>
    [Required]
    public string GrpcEndpoint { get; set; } = "127.0.0.1:5100";

    /// <summary>Where REST over HTTP/1.1 is served: <c>127.0.0.1:5180</c>. Kestrel cannot serve h2c and HTTP/1.1 on one cleartext port.</summary>
    [Required]
    public string RestEndpoint { get; set; } = "127.0.0.1:5180";

    /// <summary>The API keys callers may present, each bound to one tenant and role. Only SHA-256 hashes are configured.</summary>
    public List<ApiKeyOptions> ApiKeys { get; set; } = [];

    /// <summary>JWT bearer tokens (HS256), accepted when a signing key is set.</summary>
    public JwtOptions Jwt { get; set; } = new();

    public RateLimitOptions RateLimit { get; set; } = new();

    /// <summary>How long a unary call may see no activity in either direction before the proxy gives up on it.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan ActivityTimeout { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>The same for streaming calls (WatchTasks, WatchWorkers, HeartbeatStream …), which may be quiet for long.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "30.00:00:00")]
    public TimeSpan StreamActivityTimeout { get; set; } = TimeSpan.FromDays(1);

    /// <summary>How long one service's <c>/health</c> may take before it counts as unhealthy.</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "00:01:00")]
    public TimeSpan HealthCheckTimeout { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>How long a service's health answer is reused, so anonymous <c>/health</c> calls cannot multiply load on the services.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "00:01:00")]
    public TimeSpan HealthCacheDuration { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>One API key: <c>{"Name":"default-worker","Tenant":"default","Role":"worker","Sha256":"…"}</c>.</summary>
public sealed class ApiKeyOptions
{
    /// <summary>Names the caller in logs and its rate-limit bucket; never the key itself.</summary>
    public string Name { get; set; } = "";

    public string Tenant { get; set; } = "";

    /// <summary><c>reader</c>, <c>worker</c>, <c>operator</c> or <c>platform-admin</c> (never <c>service</c>).</summary>
    public string Role { get; set; } = "";

    /// <summary>Lowercase hex SHA-256 of the key's UTF-8 bytes.</summary>
    public string Sha256 { get; set; } = "";
}

/// <summary>
/// JWT bearer settings (HS256 only, lifetime checked with 30 s of skew). Tokens carry <c>tenant</c> and <c>role</c> (or
/// <c>roles</c>) claims, the highest of reader, worker, operator and platform-admin counting; <c>sub</c> names the caller.
/// </summary>
public sealed class JwtOptions
{
    /// <summary>The HS256 key (at least 32 bytes of UTF-8 text). Empty: JWTs are not accepted.</summary>
    public string SigningKey { get; set; } = "";

    /// <summary>Required <c>iss</c>, if set.</summary>
    public string? Issuer { get; set; }

    /// <summary>Required <c>aud</c>, if set.</summary>
    public string? Audience { get; set; }
}

/// <summary>A token bucket per client (API key, JWT subject, or IP address when anonymous). Streaming calls count once.</summary>
public sealed class RateLimitOptions
{
    /// <summary>Sustained requests per second per client; 0 turns rate limiting off.</summary>
    [Range(0, 1_000_000)]
    public int PermitsPerSecond { get; set; } = 1000;

    /// <summary>Requests a client may make at once after being idle (the bucket's size).</summary>
    [Range(1, 10_000_000)]
    public int Burst { get; set; } = 2000;
}
