using System.Threading.RateLimiting;
using Grpc.Core;
using Lifeline.Gateway.Errors;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.Gateway.Options;
using Lifeline.Gateway.Security;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway.RateLimiting;

/// <summary>
/// A token bucket per client: per API key or JWT subject, per IP address for anonymous callers. A request takes
/// one token when it arrives, so a stream counts once however long it lasts. An empty bucket refuses the call
/// with RESOURCE_EXHAUSTED / 429 and a <c>Retry-After</c> (and <c>google.rpc.RetryInfo</c>).
/// </summary>
internal sealed partial class ClientRateLimiter : IAsyncDisposable
{
    private readonly RequestDelegate _next;
    private readonly ILogger<ClientRateLimiter> _logger;
    private readonly PartitionedRateLimiter<string>? _limiter;

    public ClientRateLimiter(RequestDelegate next, IOptions<GatewayOptions> options, ILogger<ClientRateLimiter> logger)
    {
        _next = next;
        _logger = logger;
        var settings = options.Value.RateLimit;
        if (settings.PermitsPerSecond > 0)
        {
            // Refill in small steps (about 20 a second) rather than once a second, so a bucket never empties and refills in lumps.
            var tokensPerPeriod = Math.Max(1, settings.PermitsPerSecond / 20);
            var bucket = new TokenBucketRateLimiterOptions
            {
                TokenLimit = settings.Burst,
                TokensPerPeriod = tokensPerPeriod,
                ReplenishmentPeriod = TimeSpan.FromSeconds((double)tokensPerPeriod / settings.PermitsPerSecond),
                QueueLimit = 0,
                AutoReplenishment = true,
            };
            _limiter = PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetTokenBucketLimiter(key, _ => bucket));
        }
    }

    public async Task InvokeAsync(HttpContext context)
    {
        if (_limiter is null)
        {
            await _next(context).ConfigureAwait(false);
            return;
        }

        var key = context.GetCaller()?.RateLimitKey
            ?? "ip:" + (context.Connection.RemoteIpAddress?.ToString() ?? "unknown");
        using var lease = _limiter.AttemptAcquire(key);
        if (lease.IsAcquired)
        {
            await _next(context).ConfigureAwait(false);
            return;
        }

        var retryAfter = lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? wait : TimeSpan.FromSeconds(1);
        LogRateLimited(_logger, key, context.Request.Path);
        await CallRefusal.WriteAsync(context, StatusCode.ResourceExhausted, "RATE_LIMITED",
            "Too many requests from this client; retry after the delay given.", retryAfter).ConfigureAwait(false);
    }

    public ValueTask DisposeAsync() => _limiter?.DisposeAsync() ?? ValueTask.CompletedTask;

    [LoggerMessage(EventId = 6007, Level = LogLevel.Debug, Message = "Rate limited {Client} calling {Path}")]
    private static partial void LogRateLimited(ILogger logger, string client, string path);
}
