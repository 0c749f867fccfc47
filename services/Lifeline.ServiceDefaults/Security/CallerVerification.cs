using Grpc.AspNetCore.Server;
using Grpc.Core;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// Every call to a Lifeline RPC (gRPC or its REST route) must carry a valid identity token
/// (<see cref="IdentityTokens"/>): none, or a forged, expired or foreign one, is UNAUTHENTICATED; a role below what
/// <see cref="RpcPermissions"/> asks is PERMISSION_DENIED. Reaching a service's port is not enough. Health,
/// reflection and <c>grpc.health.v1</c> stay open. Runs after routing, before anything reads the request.
/// </summary>
public static partial class CallerVerification
{
    private const string FeatureKey = "lifeline.caller";

    public static WebApplication UseCallerVerification(this WebApplication app)
    {
        var tokens = app.Services.GetRequiredService<IdentityTokens>();
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(CallerVerification).FullName!);
        app.Use(async (context, next) =>
        {
            var method = context.GetEndpoint()?.Metadata.GetMetadata<GrpcMethodMetadata>()?.Method;
            if (method is null || !method.ServiceName.StartsWith("lifeline.", StringComparison.Ordinal))
            {
                await next(context);
                return;
            }

            var rpc = method.ServiceName + "/" + method.Name;
            var token = context.Request.Headers[IdentityTokens.HeaderName].ToString();
            if (token.Length == 0)
            {
                LogRefused(logger, rpc, "no identity token");
                await CallRefusal.WriteAsync(context, StatusCode.Unauthenticated, "IDENTITY_REQUIRED",
                    "This is a Lifeline service; call it through the gateway with an API key or JWT. The gateway tells the service who is calling.");
                return;
            }

            var (identity, refusal) = await tokens.VerifyAsync(token);
            if (identity is null)
            {
                LogRefused(logger, rpc, refusal!);
                await CallRefusal.WriteAsync(context, StatusCode.Unauthenticated, "IDENTITY_INVALID", $"Identity refused: {refusal}.");
                return;
            }

            var required = RpcPermissions.Required(rpc);
            if (identity.Role < required)
            {
                LogDenied(logger, rpc, identity.Subject, identity.Role.Name(), required.Name());
                await CallRefusal.WriteAsync(context, StatusCode.PermissionDenied, "ROLE_NOT_ALLOWED",
                    $"The role '{identity.Role.Name()}' may not call {rpc}; it needs '{required.Name()}'.");
                return;
            }

            context.Items[FeatureKey] = identity;
            await next(context);
        });
        return app;
    }

    /// <summary>The verified caller of this call (set before any handler runs).</summary>
    public static CallerIdentity Caller(this ServerCallContext context) =>
        context.GetHttpContext().Items.TryGetValue(FeatureKey, out var value) && value is CallerIdentity identity
            ? identity
            : throw new InvalidOperationException("The call carries no verified identity: CallerVerification runs before every Lifeline RPC.");

    [LoggerMessage(EventId = 9005, Level = LogLevel.Information, Message = "Refused {Rpc}: {Reason}")]
    private static partial void LogRefused(ILogger logger, string rpc, string reason);

    [LoggerMessage(EventId = 9006, Level = LogLevel.Information, Message = "Refused {Rpc} to {Subject}: role {Role}, needs {Required}")]
    private static partial void LogDenied(ILogger logger, string rpc, string subject, string role, string required);
}
