using System.Net.Sockets;
using System.Reflection;
using Grpc.Core;
using Grpc.Health.V1;
using Grpc.Net.Client.Configuration;
using Lifeline.ServiceDefaults.Grpc;
using Lifeline.ServiceDefaults.Security;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using ContractDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;

namespace Lifeline.ServiceDefaults.Clients;

/// <summary>
/// The one way a Lifeline service calls another: a typed gRPC client from the client factory
/// (<c>AddGrpcClient</c>), at the address in <c>services:&lt;service&gt;:grpc:0</c> (what Aspire's <c>WithReference</c>
/// and the test harness set), with
/// <list type="bullet">
/// <item>the service's identity and the tenant each call acts for (<see cref="IdentityPropagation"/>, <see cref="ServiceCall"/>),</item>
/// <item>a deadline on every call that has none (<see cref="DefaultDeadline.ForServices"/>),</item>
/// <item>UNAVAILABLE retried on the idempotent calls of <see cref="RetriedCalls"/> only,</item>
/// <item>messages up to <see cref="Extensions.MaxMessageBytes"/> either way.</item>
/// </list>
/// The address is checked while the service is built: a required client without one, or with one that is not an
/// http(s) URL, stops the service with a message naming the setting.
/// </summary>
public static class ServiceClientRegistration
{
    /// <summary>The configuration key of <paramref name="service"/>'s address (<c>services__&lt;service&gt;__grpc__0</c> in the environment).</summary>
    public static string AddressKey(string service) => $"services:{service}:grpc:0";

    /// <summary>A client of <paramref name="service"/> this service cannot work without; inject <typeparamref name="TClient"/>.</summary>
    public static IHostApplicationBuilder AddServiceClient<TClient>(this IHostApplicationBuilder builder, string service)
        where TClient : ClientBase<TClient>
    {
        var address = Address(builder, service) ?? throw new InvalidOperationException(
            $"{AddressKey(service)} is not set: {builder.Environment.ApplicationName} calls the {service} service and cannot start without its "
            + $"address, an http(s) URL such as http://127.0.0.1:5101 (Aspire's WithReference sets services__{service}__grpc__0).");
        Register<TClient>(builder.Services, service, address);
        return builder;
    }

    /// <summary>
    /// A client of <paramref name="service"/> this service works without; inject
    /// <see cref="OptionalServiceClient{TClient}"/>, whose client is null when the address is not set.
    /// </summary>
    public static IHostApplicationBuilder AddOptionalServiceClient<TClient>(this IHostApplicationBuilder builder, string service)
        where TClient : ClientBase<TClient>
    {
        if (Address(builder, service) is { } address)
        {
            Register<TClient>(builder.Services, service, address);
            builder.Services.AddTransient(sp => new OptionalServiceClient<TClient>(service, sp.GetRequiredService<TClient>()));
        }
        else
        {
            builder.Services.AddSingleton(new OptionalServiceClient<TClient>(service, null));
            builder.Services.TryAddSingleton<PeerServices>();
        }
        return builder;
    }

    private static Uri? Address(IHostApplicationBuilder builder, string service)
    {
        var value = builder.Configuration[AddressKey(service)];
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            throw new InvalidOperationException($"{AddressKey(service)} '{value}' is not an http(s) URL such as http://127.0.0.1:5101.");
        }
        return uri;
    }

    private static void Register<TClient>(IServiceCollection services, string service, Uri address) where TClient : ClientBase<TClient>
    {
        var retries = RetriedCalls.For(ContractOf<TClient>());
        Configure(services.AddGrpcClient<TClient>(o => o.Address = address), retries);
        if (!services.Any(d => d.ServiceType == typeof(PeerService) && !d.IsKeyedService && d.ImplementationInstance is PeerService peer && peer.Name == service))
        {
            services.AddSingleton(new PeerService(service, address));
            Configure(services.AddGrpcClient<Health.HealthClient>(PeerServices.HealthClientName(service), o => o.Address = address), null);
        }
        services.TryAddSingleton<PeerServices>();
    }

    private static void Configure(IHttpClientBuilder client, ServiceConfig? retries) =>
        client
            .ConfigurePrimaryHttpMessageHandler(() => new SocketsHttpHandler
            {
                // As GrpcChannel.ForAddress: more HTTP/2 connections when one's streams are all in use.
                EnableMultipleHttp2Connections = true,
                // Connecting ourselves (what SocketsHttpHandler does anyway) makes the channel leave connections to the
                // handler: every call attempt that finds no connection opens one. Without it the channel keeps one
                // connection of its own and, once a connect failed, fails every call at once until its reconnect
                // backoff (1 s, growing to 2 min) has passed — so a retry could never reach a peer that came back.
                ConnectCallback = ConnectAsync,
            })
            .ConfigureChannel(o =>
            {
                o.MaxReceiveMessageSize = Extensions.MaxMessageBytes;
                o.MaxSendMessageSize = Extensions.MaxMessageBytes;
                o.ServiceConfig = retries;
            })
            .AddInterceptor(() => DefaultDeadline.ForServices)
            .AddInterceptor(sp => new IdentityPropagation(sp.GetRequiredService<ServiceIdentity>()))
            // gRPC calls are traced and measured (OpenTelemetry); the client factory's per-request log lines add nothing.
            .RemoveAllLoggers();

    private static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(context.DnsEndPoint, ct).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>The contract of a generated client: <c>Descriptor</c> of the class it is nested in.</summary>
    private static ContractDescriptor ContractOf<TClient>() =>
        typeof(TClient).DeclaringType?.GetProperty("Descriptor", BindingFlags.Public | BindingFlags.Static)?.GetValue(null) as ContractDescriptor
        ?? throw new InvalidOperationException($"{typeof(TClient).FullName} is not a client generated from a .proto service.");
}
