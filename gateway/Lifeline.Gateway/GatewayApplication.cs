using Lifeline.ServiceDefaults.Telemetry;
using Lifeline.ServiceDefaults.Security;
using System.Net;
using Grpc.Core;
using Lifeline.Gateway.Contracts;
using Lifeline.Gateway.Errors;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.Gateway.Health;
using Lifeline.Gateway.OpenApi;
using Lifeline.Gateway.Options;
using Lifeline.Gateway.RateLimiting;
using Lifeline.Gateway.Reflection;
using Lifeline.Gateway.Routing;
using Lifeline.Gateway.Security;
using Lifeline.Gateway.Tracing;
using Lifeline.ServiceDefaults;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace Lifeline.Gateway;

/// <summary>Builds the gateway; Program.cs runs it, tests start it in-process on loopback ports.</summary>
public static partial class GatewayApplication
{
    /// <summary>Largest request body (a 64 MiB gRPC message as REST JSON, with room to spare).</summary>
    private const long MaxRequestBodyBytes = 80L * 1024 * 1024;

    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        configure?.Invoke(builder); // first: hosts and tests supply configuration

        var catalog = ContractCatalog.Load();
        var upstreams = UpstreamServices.FromConfiguration(builder.Configuration, catalog);
        builder.Services.AddSingleton(catalog);
        builder.Services.AddSingleton(upstreams);
        builder.Services.AddOptions<GatewayOptions>()
            .BindConfiguration(GatewayOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();

        // Two listeners: cleartext HTTP/2 cannot share a port with HTTP/1.1. ASPNETCORE_URLS does not apply.
        var endpoints = new GatewayEndpoints();
        builder.Services.AddSingleton(endpoints);
        builder.WebHost.UseSetting(WebHostDefaults.ServerUrlsKey, "");
        builder.WebHost.ConfigureKestrel((context, kestrel) =>
        {
            var options = context.Configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = MaxRequestBodyBytes;
            kestrel.Listen(ParseEndpoint(options.GrpcEndpoint), listen =>
            {
                listen.Protocols = HttpProtocols.Http2;
                endpoints.GrpcListener = listen;
            });
            kestrel.Listen(ParseEndpoint(options.RestEndpoint), listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                endpoints.RestListener = listen;
            });
        });

        builder.Services.AddGrpc();
        builder.Services.AddSuiteReflection(catalog, upstreams);
        builder.Services.AddUpstreamHealthChecks(catalog, upstreams);
        builder.Services.AddGatewayAuthentication();
        builder.Services.AddLifelineIdentity();
        builder.Services.AddSingleton<OpenApiDocument>();
        var gatewayOptions = builder.Configuration.GetSection(GatewayOptions.Section).Get<GatewayOptions>() ?? new GatewayOptions();
        var (routes, clusters) = ProxyRoutes.Build(catalog, upstreams, gatewayOptions);
        builder.Services.AddReverseProxy().LoadFromMemory(routes, clusters);
        builder.AddOpenTelemetryDefaults();

        var app = builder.Build();
        // After start: by then the options have been validated.
        app.Lifetime.ApplicationStarted.Register(() => LogStartup(app, catalog, upstreams, routes.Count));

        // Routing runs first (WebApplication adds it): authorization needs the endpoint, and with it the route's policy.
        app.UsePrometheusOnLoopback(); // /metrics for a scraper on this host, before authentication (from elsewhere: 404)
        app.UseMiddleware<TraceIdPropagation>();
        app.UseAuthentication();
        app.UseMiddleware<ClientRateLimiter>(); // buckets by the authenticated caller, or by IP address
        app.UseAuthorization();

        app.MapReverseProxy(proxy =>
        {
            proxy.UseMiddleware<IdentityForwarding>();
            proxy.UseMiddleware<UpstreamFailure>();
        });
        app.MapSuiteReflection();
        app.MapSuiteHealth();
        app.MapGet("/openapi.json", (OpenApiDocument document) => Results.Bytes(document.Json, "application/json"));
        app.MapFallback(context => CallRefusal.IsGrpc(context.Request)
            ? CallRefusal.WriteAsync(context, StatusCode.Unimplemented, "UNKNOWN_METHOD", $"No Lifeline RPC at {context.Request.Path}.")
            : CallRefusal.WriteAsync(context, StatusCode.NotFound, "UNKNOWN_ROUTE",
                $"No route {context.Request.Method} {context.Request.Path}; see /openapi.json."));
        return app;
    }

    private static IPEndPoint ParseEndpoint(string value) =>
        IPEndPoint.TryParse(value, out var endpoint) ? endpoint : IPEndPoint.Parse("127.0.0.1:0"); // validation reports it first

    private static void LogStartup(WebApplication app, ContractCatalog catalog, UpstreamServices upstreams, int routeCount)
    {
        var logger = app.Services.GetRequiredService<ILoggerFactory>().CreateLogger("Lifeline.Gateway");
        foreach (var (name, addresses) in upstreams.Addresses)
        {
            LogUpstream(logger, name, string.Join(", ", addresses));
        }

        foreach (var unrouted in catalog.Services.Where(s => !upstreams.Addresses.ContainsKey(s.Upstream)))
        {
            LogUnrouted(logger, unrouted.FullName, unrouted.Upstream);
        }

        foreach (var method in catalog.Methods.Keys.Where(m => !RpcPermissions.Table.ContainsKey(m)))
        {
            LogUnlisted(logger, method);
        }

        var options = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        LogRoutes(logger, routeCount, options.ApiKeys.Count, options.Jwt.SigningKey.Length > 0);
    }

    [LoggerMessage(EventId = 6002, Level = LogLevel.Information, Message = "Routing service {Service} to {Addresses}")]
    private static partial void LogUpstream(ILogger logger, string service, string addresses);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Warning,
        Message = "Not routing {Service}: no address configured (services__{Upstream}__grpc__0)")]
    private static partial void LogUnrouted(ILogger logger, string service, string upstream);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Warning,
        Message = "{Rpc} is missing from the permissions table; no credential may call it through the gateway")]
    private static partial void LogUnlisted(ILogger logger, string rpc);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Information,
        Message = "{Routes} routes; {ApiKeys} API keys; JWT bearer tokens {JwtEnabled}")]
    private static partial void LogRoutes(ILogger logger, int routes, int apiKeys, bool jwtEnabled);
}
