using Lifeline.Gateway.Routing;
using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;
using Microsoft.Net.Http.Headers;

namespace Lifeline.Gateway.Security;

/// <summary>
/// The last step before an authorized call is forwarded (YARP's proxy pipeline). The service learns who calls
/// from a short-lived identity token the gateway signs (<see cref="IdentityTokens"/>) for the authenticated
/// caller, whose tenant is the credential's; any identity header the client sent is replaced, and the credential
/// itself does not travel further. A stream may be slower than Kestrel's minimum request data rate.
/// </summary>
internal sealed class IdentityForwarding(RequestDelegate next, IdentityTokens tokens)
{
    /// <summary>Who vouches for the callers the gateway forwards.</summary>
    public const string Issuer = "lifeline-gateway";

    public Task InvokeAsync(HttpContext context)
    {
        // Every proxied route requires a role policy, so only an authenticated caller gets here.
        var caller = context.GetCaller()
            ?? throw new InvalidOperationException($"{context.Request.Path} reached the proxy without an authenticated caller; its route lacks an authorization policy.");

        var route = context.GetReverseProxyFeature().Route.Config;
        if (route.Metadata?.GetValueOrDefault(ProxyRoutes.StreamingMetadataKey) == "true")
        {
            // A heartbeat stream sends a few bytes every few seconds: far below Kestrel's minimum body data rate.
            if (context.Features.Get<IHttpMinRequestBodyDataRateFeature>() is { } rate)
            {
                rate.MinDataRate = null;
            }
        }

        var headers = context.Request.Headers;
        headers.Remove(IdentityTokens.HeaderName);
        headers[IdentityTokens.HeaderName] = tokens.Mint(caller.Name, caller.Tenant, caller.Role, Issuer);
        headers.Remove(HeaderNames.Authorization);
        headers.Remove(ApiKeyAuthenticationHandler.HeaderName);
        return next(context);
    }
}
