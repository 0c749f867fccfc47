using Google.Rpc;
using Grpc.Core;

namespace Lifeline.Worker.Internal;

/// <summary>Reads Lifeline's refusals: gRPC status codes with a <c>google.rpc.ErrorInfo</c> reason.</summary>
internal static class RpcErrors
{
    /// <summary>The ErrorInfo reason (e.g. <c>STALE_FENCING_TOKEN</c>), or an empty string.</summary>
    public static string Reason(RpcException exception)
    {
        try
        {
            return exception.GetRpcStatus()?.GetDetail<ErrorInfo>()?.Reason ?? "";
        }
        catch (Google.Protobuf.InvalidProtocolBufferException)
        {
            return "";
        }
    }

    /// <summary>The lease is no longer ours: the task ended, was cancelled, or someone else holds it now.</summary>
    public static bool LeaseIsGone(RpcException exception) =>
        exception.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound;

    /// <summary>Waiting and trying again may help (<see cref="RetryPolicy.Classify(RpcException)"/>).</summary>
    public static bool IsTransient(RpcException exception) => RetryPolicy.Classify(exception) == FailureKind.Transient;

    /// <summary>The status code, the ErrorInfo reason if any, and the detail, for logs and connection-state reasons.</summary>
    public static string Describe(RpcException exception)
    {
        var reason = Reason(exception);
        var code = reason.Length == 0 ? exception.StatusCode.ToString() : $"{exception.StatusCode} ({reason})";
        return string.IsNullOrEmpty(exception.Status.Detail) ? code : $"{code}: {exception.Status.Detail}";
    }
}
