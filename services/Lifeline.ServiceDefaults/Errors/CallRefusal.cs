using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Microsoft.AspNetCore.Http;
using HttpRequest = Microsoft.AspNetCore.Http.HttpRequest;

namespace Lifeline.ServiceDefaults.Errors;

/// <summary>
/// Refuses a call before it reaches a service, in the caller's protocol: a gRPC call gets a trailers-only
/// response (HTTP 200, <c>grpc-status</c>, <c>grpc-message</c> and <c>grpc-status-details-bin</c> with a
/// <c>google.rpc.ErrorInfo</c>), a REST call the HTTP status and the JSON error body the services' transcoding
/// produces (<c>{"code":16,"message":…,"details":[…]}</c>).
/// </summary>
public static class CallRefusal
{
    public const string Domain = "lifeline";

    private static readonly JsonFormatter Json = new(JsonFormatter.Settings.Default
        .WithTypeRegistry(Google.Protobuf.Reflection.TypeRegistry.FromMessages(ErrorInfo.Descriptor, RetryInfo.Descriptor)));

    public static bool IsGrpc(HttpRequest request) =>
        request.ContentType?.StartsWith("application/grpc", StringComparison.OrdinalIgnoreCase) == true;

    public static Task WriteAsync(HttpContext context, StatusCode code, string reason, string message, TimeSpan? retryAfter = null)
    {
        var status = new Google.Rpc.Status
        {
            Code = (int)code,
            Message = message,
            Details = { Any.Pack(new ErrorInfo { Reason = reason, Domain = Domain }) },
        };
        if (retryAfter is { } wait)
        {
            status.Details.Add(Any.Pack(new RetryInfo { RetryDelay = Duration.FromTimeSpan(wait) }));
        }

        var response = context.Response;
        response.Headers.CacheControl = "no-store";
        if (retryAfter is { } delay)
        {
            response.Headers.RetryAfter = Math.Max(1, (int)Math.Ceiling(delay.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        }

        if (IsGrpc(context.Request))
        {
            response.StatusCode = StatusCodes.Status200OK;
            response.ContentType = "application/grpc";
            response.Headers["grpc-status"] = ((int)code).ToString(CultureInfo.InvariantCulture);
            response.Headers["grpc-message"] = PercentEncode(message);
            response.Headers["grpc-status-details-bin"] = Convert.ToBase64String(status.ToByteArray()).TrimEnd('=');
            return response.CompleteAsync();
        }

        response.StatusCode = HttpStatusOf(code);
        response.ContentType = "application/json; charset=utf-8";
        return response.WriteAsync(Json.Format(status), context.RequestAborted);
    }

    /// <summary>The gRPC spec's encoding of grpc-message: printable ASCII except '%' as is, every other UTF-8 byte as %XX.</summary>
    internal static string PercentEncode(string message)
    {
        var builder = new System.Text.StringBuilder(message.Length);
        foreach (var b in System.Text.Encoding.UTF8.GetBytes(message))
        {
            if (b is >= 0x20 and <= 0x7E and not (byte)'%')
            {
                builder.Append((char)b);
            }
            else
            {
                builder.Append('%').Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture));
            }
        }

        return builder.ToString();
    }

    private static int HttpStatusOf(StatusCode code) => code switch
    {
        StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
        StatusCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
        StatusCode.NotFound or StatusCode.Unimplemented => StatusCodes.Status404NotFound,
        StatusCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };
}
