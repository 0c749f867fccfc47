using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Grpc;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Security;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Lifeline.ServiceDefaults;

/// <summary>What every Lifeline service sets up the same way.</summary>
public static class Extensions
{
    /// <summary>Largest gRPC message a service accepts or sends (batches of thousands of tasks).</summary>
    public const int MaxMessageBytes = 64 * 1024 * 1024;

    /// <summary>
    /// gRPC (with the error-mapping interceptor, JSON transcoding for <c>google.api.http</c> routes,
    /// reflection and <c>grpc.health.v1</c>), health checks, OpenTelemetry, and a non-zero exit code when
    /// the host stopped because background work failed.
    /// </summary>
    public static IHostApplicationBuilder AddServiceDefaults(this IHostApplicationBuilder builder)
    {
        builder.Services.AddGrpc(options =>
        {
            options.Interceptors.Add<ErrorMappingInterceptor>();
            options.MaxReceiveMessageSize = MaxMessageBytes;
            options.MaxSendMessageSize = MaxMessageBytes;
            options.EnableDetailedErrors = false;
        }).AddJsonTranscoding(o =>
        {
            // Error details travel as google.protobuf.Any; REST callers see them as JSON too.
            o.TypeRegistry = Google.Protobuf.Reflection.TypeRegistry.FromMessages(
                Google.Rpc.BadRequest.Descriptor, Google.Rpc.ErrorInfo.Descriptor, Google.Rpc.RetryInfo.Descriptor,
                Google.Rpc.ResourceInfo.Descriptor, Google.Rpc.PreconditionFailure.Descriptor);
            // The proto3 JSON mapping: 64-bit integers are strings (a JavaScript number cannot hold every int64).
            o.JsonSettings.WriteInt64sAsStrings = true;
        });
        builder.Services.AddMalformedRequestHandling();
        builder.Services.AddLifelineIdentity();
        // "Lifeline.Queue" → lifeline-queue: the identity this service presents to the others.
        var serviceName = builder.Environment.ApplicationName.Replace("Lifeline.", "", StringComparison.Ordinal).ToLowerInvariant();
        builder.Services.AddSingleton(sp => new ServiceIdentity(sp.GetRequiredService<IdentityTokens>(), serviceName));
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks()
            .AddCheck("self", () => HealthCheckResult.Healthy(), ["live"]);
        builder.AddOpenTelemetryDefaults();
        builder.Services.AddFailureExitCode();
        // EF Core only migrates here; its probe of a not-yet-created history table is not an error.
        builder.Logging.AddFilter("Microsoft.EntityFrameworkCore.Database.Command", LogLevel.Critical);
        return builder;
    }

    /// <summary>Traces and metrics over OTLP, only when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (also used by the gateway).</summary>
    public static void AddOpenTelemetryDefaults(this IHostApplicationBuilder builder)
    {
        // Traces and metrics cost CPU on every call; collect them only when there is somewhere to send them.
        if (string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            return;
        }
        builder.Services.AddOpenTelemetry()
            .WithMetrics(metrics => metrics
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddMeter("System.Runtime")
                .AddMeter("Lifeline.*"))
            .WithTracing(tracing => tracing
                .AddSource(builder.Environment.ApplicationName)
                .AddSource("Lifeline.*")
                .AddAspNetCoreInstrumentation(o => o.Filter = ctx => !ctx.Request.Path.StartsWithSegments("/health"))
                .AddHttpClientInstrumentation()
                .AddNpgsql())
            .UseOtlpExporter();
    }

    /// <summary>
    /// Maps <c>/health</c> (everything), <c>/alive</c> (liveness), reflection and <c>grpc.health.v1</c>, refuses
    /// calls without a verified caller (<see cref="CallerVerification"/>), and bounds every unary call's duration
    /// on the server (<see cref="Grpc.CallTimeLimit"/>).
    /// </summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.UseCallerVerification();
        app.UseCallTimeLimit();
        app.UseRestContractGuard();
        app.MapHealthChecks("/health");
        app.MapHealthChecks("/alive", new HealthCheckOptions { Predicate = r => r.Tags.Contains("live") });
        app.MapGrpcReflectionService();
        app.MapGrpcHealthChecksService();
        return app;
    }
}
