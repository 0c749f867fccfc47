using Grpc.AspNetCore.Server;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace Lifeline.ServiceDefaults.Grpc;

/// <summary>
/// A server-side bound on every unary call (gRPC and REST), whatever deadline the caller sent — or none:
/// the call's cancellation token fires at the limit, and the error-mapping interceptor answers the caller
/// then (DEADLINE_EXCEEDED with RetryInfo) even if the handler is still inside a wait that does not honour
/// cancellation, so no caller can wait forever on PostgreSQL, Redis or another service. Streaming calls (watches, heartbeat streams, backups)
/// live as long as their caller wants and are not limited here.
/// </summary>
public static class CallTimeLimit
{
    /// <summary>The default limit; longer than the longest legitimate unary call (a 30 s lease long-poll).</summary>
    public static readonly TimeSpan DefaultLimit = TimeSpan.FromSeconds(90);

    private const string ItemKey = "lifeline.call-time-limit";

    /// <summary>
    /// Adds the middleware (configuration <c>Lifeline:MaxUnaryCallDuration</c>, default <see cref="DefaultLimit"/>);
    /// it runs after routing, so the gRPC method is known.
    /// </summary>
    public static WebApplication UseCallTimeLimit(this WebApplication app)
    {
        var limit = DefaultLimit;
        var configured = app.Configuration["Lifeline:MaxUnaryCallDuration"];
        if (!string.IsNullOrWhiteSpace(configured))
        {
            if (!TimeSpan.TryParse(configured, System.Globalization.CultureInfo.InvariantCulture, out limit) || limit <= TimeSpan.Zero)
            {
                throw new InvalidOperationException($"Lifeline:MaxUnaryCallDuration must be a positive duration such as 00:01:30; got '{configured}'.");
            }
        }
        app.Use(async (context, next) =>
        {
            var method = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
            if (method is not null && context.Request.Headers.TryGetValue("grpc-timeout", out var timeout) && !ValidTimeout(timeout.ToString()))
            {
                // grpc-dotnet ignores a timeout it cannot read, and the caller would believe it had a deadline.
                await RefuseAsync(context, "grpc-timeout",
                    $"'{Validation.Violations.Truncate(timeout.ToString(), 40)}' is not a gRPC timeout: 1 to 8 digits followed by one of H, M, S, m, u, n");
                return;
            }
            if (method is null || method.Type != MethodType.Unary)
            {
                await next(context);
                return;
            }
            var original = context.RequestAborted;
            using var timer = new CancellationTokenSource(limit);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(original, timer.Token);
            context.RequestAborted = linked.Token;
            context.Items[ItemKey] = new Running(timer, limit);
            try
            {
                await next(context);
            }
            finally
            {
                context.Items.Remove(ItemKey);
                context.RequestAborted = original;
            }
        });
        return app;
    }

    /// <summary>Whether a <c>grpc-timeout</c> value follows the gRPC protocol: TimeoutValue (1–8 ASCII digits) then TimeoutUnit.</summary>
    public static bool ValidTimeout(string value) =>
        value.Length is >= 2 and <= 9 && "HMSmun".Contains(value[^1], StringComparison.Ordinal) && value[..^1].All(char.IsAsciiDigit);

    /// <summary>Answers a gRPC call INVALID_ARGUMENT (a trailers-only response) without running it.</summary>
    private static async Task RefuseAsync(HttpContext context, string field, string description)
    {
        var status = Errors.ErrorMappingInterceptor.ToStatus(Errors.ValidationException.For(field, description));
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/grpc";
        context.Response.Headers["grpc-status"] = status.Code.ToString(System.Globalization.CultureInfo.InvariantCulture);
        context.Response.Headers["grpc-message"] = Uri.EscapeDataString(status.Message);
        context.Response.Headers["grpc-status-details-bin"] = Convert.ToBase64String(Google.Protobuf.MessageExtensions.ToByteArray(status)).TrimEnd('=');
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    /// <summary>The token that fires at this call's limit; none when the call is not limited (streams, in-process tests).</summary>
    public static CancellationToken? LimitToken(ServerCallContext context) => Find(context)?.Timer.Token;

    /// <summary>The limit that ended this call when it was the server's own limit (not the caller) that ended it.</summary>
    public static TimeSpan? Expired(ServerCallContext context) =>
        Find(context) is { Timer.IsCancellationRequested: true } running ? running.Limit : null;

    private static Running? Find(ServerCallContext context)
    {
        try
        {
            return context.GetHttpContext().Items.TryGetValue(ItemKey, out var value) ? value as Running : null;
        }
        catch (InvalidOperationException)
        {
            return null; // not hosted over HTTP
        }
    }

    private sealed record Running(CancellationTokenSource Timer, TimeSpan Limit);
}
