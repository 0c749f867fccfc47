using Lifeline.ServiceDefaults.Security;
using Grpc.Core;
using Lifeline.Gateway.Errors;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.Gateway.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Net.Http.Headers;
using Yarp.ReverseProxy.Model;

namespace Lifeline.Gateway.Security;

/// <summary>
/// The last step before a call is forwarded (YARP's proxy pipeline): the caller must be authenticated
/// (UNAUTHENTICATED / 401) and hold the role <see cref="RpcPermissions"/> names for the RPC the route carries
/// (PERMISSION_DENIED / 403). The service learns who calls from a short-lived identity token the gateway signs
/// (<see cref="IdentityTokens"/>), whose tenant is the credential's; any identity header the client sent is
/// replaced, and the credential itself does not travel further.
/// </summary>
internal sealed partial class RpcAuthorization(RequestDelegate next, IdentityTokens tokens, ILogger<RpcAuthorization> logger)
{
    /// <summary>Who vouches for the callers the gateway forwards.</summary>
    public const string Issuer = "lifeline-gateway";

    public Task InvokeAsync(HttpContext context)
    {
        var route = context.GetReverseProxyFeature().Route.Config;
        var rpc = route.Metadata?.GetValueOrDefault(ProxyRoutes.RpcMetadataKey) ?? "";
        var identity = context.Features.Get<CallerFeature>() ?? new CallerFeature();
        if (identity.Caller is not { } caller)
        {
            var message = identity.Rejection is { } rejection
                ? $"Credential refused: {rejection}."
                : "A credential is required: an API key or JWT as 'authorization: Bearer KEY', or an API key as 'x-api-key: KEY'.";
            LogUnauthenticated(logger, rpc, identity.Rejection ?? "no credential");
            context.Response.Headers[HeaderNames.WWWAuthenticate] = "Bearer";
            return CallRefusal.WriteAsync(context, StatusCode.Unauthenticated,
                identity.Presented ? "INVALID_CREDENTIAL" : "CREDENTIAL_REQUIRED", message);
        }

        var required = RpcPermissions.Required(rpc);
        if (caller.Role < required)
        {
            LogPermissionDenied(logger, caller.Name, caller.Role.Name(), rpc, required.Name());
            return CallRefusal.WriteAsync(context, StatusCode.PermissionDenied, "ROLE_NOT_ALLOWED",
                $"The role '{caller.Role.Name()}' may not call {rpc}; it needs '{required.Name()}'.");
        }

        if (route.Metadata?.GetValueOrDefault(ProxyRoutes.StreamingMetadataKey) == "true")
        {
            // A heartbeat stream sends a few bytes every few seconds: far below Kestrel's minimum body data rate.
            if (context.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate)
            {
                rate.MinDataRate = null;
            }
        }

        var headers = context.Request.Headers;
        headers[IdentityTokens.HeaderName] = tokens.Mint(caller.Name, caller.Tenant, caller.Role, Issuer);
        headers.Remove(HeaderNames.Authorization);
        headers.Remove(CallerIdentification.ApiKeyHeader);
        return next(context);
    }

    [LoggerMessage(EventId = 1101, Level = LogLevel.Information, Message = "Refused {Rpc}: not authenticated ({Reason})")]
    private static partial void LogUnauthenticated(ILogger logger, string rpc, string reason);

    [LoggerMessage(EventId = 1102, Level = LogLevel.Information,
        Message = "Refused {Rpc} to {Caller}: role {Role} is not allowed, {Required} is needed")]
    private static partial void LogPermissionDenied(ILogger logger, string caller, string role, string rpc, string required);
}
