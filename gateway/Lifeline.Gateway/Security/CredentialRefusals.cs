using Grpc.Core;
using Lifeline.Gateway.Routing;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Security;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Model;

namespace Lifeline.Gateway.Security;

/// <summary>
/// How the gateway refuses a caller, in the caller's protocol (<see cref="CallRefusal"/>: gRPC trailers-only or
/// REST JSON, each with a <c>google.rpc.ErrorInfo</c>): no credential or a refused one is UNAUTHENTICATED / 401
/// with <c>WWW-Authenticate: Bearer</c>, a role below the RPC's is PERMISSION_DENIED / 403. Every refusal, whoever
/// triggers it (the authorization middleware, or a scheme's challenge), is written and logged here.
/// </summary>
internal sealed partial class CredentialRefusals(ILogger<CredentialRefusals> logger)
{
    /// <param name="failure">Why the presented credential was refused; null when none was presented.</param>
    public Task UnauthenticatedAsync(HttpContext context, Exception? failure)
    {
        var rpc = RpcOf(context);
        LogUnauthenticated(logger, rpc, failure?.Message ?? "no credential");
        context.Response.Headers[HeaderNames.WWWAuthenticate] = "Bearer";
        return failure is null
            ? CallRefusal.WriteAsync(context, StatusCode.Unauthenticated, "CREDENTIAL_REQUIRED",
                "A credential is required: an API key or JWT as 'authorization: Bearer KEY', or an API key as 'x-api-key: KEY'.")
            : CallRefusal.WriteAsync(context, StatusCode.Unauthenticated, "INVALID_CREDENTIAL", $"Credential refused: {failure.Message}.");
    }

    /// <param name="caller">The authenticated caller.</param>
    /// <param name="required">The least role the RPC needs; <see cref="Role.Service"/>: no credential may call it.</param>
    public Task PermissionDeniedAsync(HttpContext context, GatewayCaller? caller, Role required)
    {
        var rpc = RpcOf(context);
        var role = caller?.Role.Name() ?? "none";
        LogPermissionDenied(logger, caller?.Name ?? "?", role, rpc, required.Name());
        return CallRefusal.WriteAsync(context, StatusCode.PermissionDenied, "ROLE_NOT_ALLOWED", required == Role.Service
            ? $"No credential may call {rpc}: only the Lifeline services call it."
            : $"The role '{role}' may not call {rpc}; it needs '{required.Name()}'.");
    }

    /// <summary>The RPC the request's route carries (<see cref="ProxyRoutes.RpcMetadataKey"/>); the path on any other endpoint.</summary>
    private static string RpcOf(HttpContext context) =>
        context.GetEndpoint()?.Metadata.GetMetadata<RouteModel>()?.Config.Metadata?.GetValueOrDefault(ProxyRoutes.RpcMetadataKey)
        ?? context.Request.Path.ToString();

    [LoggerMessage(EventId = 6008, Level = LogLevel.Information, Message = "Refused {Rpc}: not authenticated ({Reason})")]
    private static partial void LogUnauthenticated(ILogger logger, string rpc, string reason);

    [LoggerMessage(EventId = 6009, Level = LogLevel.Information,
        Message = "Refused {Rpc} to {Caller}: role {Role} is not allowed, {Required} is needed")]
    private static partial void LogPermissionDenied(ILogger logger, string caller, string role, string rpc, string required);
}
