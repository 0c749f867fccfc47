using Grpc.Core;
using Yarp.ReverseProxy.Forwarder;

using Lifeline.ServiceDefaults.Errors;

namespace Lifeline.Gateway.Errors;

/// <summary>
/// When a service cannot be reached (down, restarting, refusing connections) and nothing was sent to the caller
/// yet, answers UNAVAILABLE in the caller's protocol (gRPC status, or 503 with a JSON status) instead of YARP's
/// bare 502, so gRPC clients see a retryable status with a reason.
/// </summary>
internal sealed partial class UpstreamFailure(RequestDelegate next, ILogger<UpstreamFailure> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        await next(context).ConfigureAwait(false);
        var error = context.GetForwarderErrorFeature();
        if (error is null || context.Response.HasStarted || error.Error is ForwarderError.RequestCanceled)
        {
            return;
        }

        LogUpstreamFailed(logger, context.Request.Path, error.Error, error.Exception?.Message ?? "");
        context.Response.Clear();
        await CallRefusal.WriteAsync(context, StatusCode.Unavailable, "SERVICE_UNAVAILABLE",
            "The service behind this call cannot be reached right now; retry shortly.", TimeSpan.FromSeconds(1)).ConfigureAwait(false);
    }

    [LoggerMessage(EventId = 6001, Level = LogLevel.Warning, Message = "Forwarding {Path} failed: {Error} {Reason}")]
    private static partial void LogUpstreamFailed(ILogger logger, string path, ForwarderError error, string reason);
}
