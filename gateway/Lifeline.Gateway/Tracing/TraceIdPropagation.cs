using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Lifeline.Gateway.Tracing;

/// <summary>
/// Gives every request a trace id: the caller's <c>X-Trace-Id</c> (32 hex digits), else the W3C trace the request
/// arrived in, else a new one. It is returned as <c>X-Trace-Id</c> on the response and continues to the service
/// as W3C <c>traceparent</c> (and <c>x-trace-id</c>), so a service's logs and spans join the caller's trace.
/// </summary>
internal sealed partial class TraceIdPropagation(RequestDelegate next)
{
    public const string HeaderName = "x-trace-id";
    public const string TraceParentHeader = "traceparent";

    public async Task InvokeAsync(HttpContext context)
    {
        var traceId = ChooseTraceId(context.Request.Headers[HeaderName].ToString(), Activity.Current);
        context.Response.Headers[HeaderName] = traceId.ToHexString();

        // The forwarder's HTTP client writes traceparent from Activity.Current: make that the chosen trace.
        Activity? activity = null;
        if (Activity.Current?.TraceId != traceId)
        {
            activity = new Activity("Lifeline.Gateway.Forward");
            activity.SetParentId(traceId, ActivitySpanId.CreateRandom(), ActivityTraceFlags.Recorded);
            activity.Start();
        }

        var current = Activity.Current!;
        var headers = context.Request.Headers;
        headers[HeaderName] = traceId.ToHexString();
        headers[TraceParentHeader] = $"00-{traceId.ToHexString()}-{current.SpanId.ToHexString()}-{(current.Recorded ? "01" : "00")}";
        try
        {
            await next(context).ConfigureAwait(false);
        }
        finally
        {
            activity?.Stop();
        }
    }

    internal static ActivityTraceId ChooseTraceId(string header, Activity? current)
    {
        if (TraceIdPattern().IsMatch(header) && header.Any(c => c != '0'))
        {
            return ActivityTraceId.CreateFromString(header.ToLowerInvariant());
        }

        return current is { IdFormat: ActivityIdFormat.W3C } ? current.TraceId : ActivityTraceId.CreateRandom();
    }

    [GeneratedRegex("^[0-9a-fA-F]{32}$")]
    private static partial Regex TraceIdPattern();
}
