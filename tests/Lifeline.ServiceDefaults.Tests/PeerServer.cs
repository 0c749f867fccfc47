using System.Collections.Concurrent;
using System.Net;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Lifeline.Backup.V1;
using Lifeline.Checkpoint.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Clients;
using Lifeline.ServiceDefaults.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>What reached the peer: the method, its identity header (if any), whether the in-process tenant marker leaked, the deadline.</summary>
public sealed record Arrival(string Method, string? Identity, bool MarkerLeaked, DateTime Deadline, DateTime At);

/// <summary>
/// The other end of service-to-service calls: a real Kestrel HTTP/2 gRPC server on a loopback port serving the queue,
/// registry, checkpoint and backup contracts and grpc.health.v1. Every call is recorded as it arrives (a server
/// interceptor, before the method runs); <see cref="FailNext"/> makes the next calls of a method fail with
/// UNAVAILABLE after they were recorded — a peer that did the work and then lost the connection, as far as the
/// caller can tell. Methods not overridden below answer UNIMPLEMENTED, after being recorded.
/// </summary>
public sealed class PeerServer : IAsyncDisposable
{
    private readonly ConcurrentDictionary<string, int> _failNext = new(StringComparer.Ordinal);
    private WebApplication _app = null!;

    public Uri Address { get; private set; } = null!;

    public ConcurrentQueue<Arrival> Arrivals { get; } = new();

    /// <summary>Calls of <paramref name="method"/> (e.g. <c>/lifeline.registry.v1.RegistryService/ListWorkers</c>) recorded so far.</summary>
    public IReadOnlyList<Arrival> Of(string method) => [.. Arrivals.Where(a => a.Method == method)];

    /// <summary>The next <paramref name="calls"/> calls of <paramref name="method"/> are recorded, then fail with UNAVAILABLE.</summary>
    public void FailNext(string method, int calls) => _failNext[method] = calls;

    public static async Task<PeerServer> StartAsync()
    {
        var server = new PeerServer();
        var builder = WebApplication.CreateBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2));
        builder.Services.AddSingleton(server);
        builder.Services.AddGrpc(o => o.Interceptors.Add<Recorder>());
        builder.Services.AddGrpcHealthChecks();
        var app = builder.Build();
        app.MapGrpcService<QueuePeer>();
        app.MapGrpcService<RegistryPeer>();
        app.MapGrpcService<CheckpointPeer>();
        app.MapGrpcService<BackupPeer>();
        app.MapGrpcHealthChecksService();
        await app.StartAsync();
        server._app = app;
        server.Address = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        return server;
    }

    private void Record(ServerCallContext context)
    {
        Arrivals.Enqueue(new Arrival(context.Method, context.RequestHeaders.Get(IdentityTokens.HeaderName)?.Value,
            context.RequestHeaders.Any(h => h.Key == ServiceCall.ActingForKey), context.Deadline, DateTime.UtcNow));
        if (_failNext.TryGetValue(context.Method, out var left) && left > 0 && _failNext.TryUpdate(context.Method, left - 1, left))
        {
            throw new RpcException(new Status(StatusCode.Unavailable, "injected after the call was recorded"));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class Recorder(PeerServer server) : Interceptor
    {
        public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context,
            UnaryServerMethod<TRequest, TResponse> continuation)
        {
            server.Record(context);
            return continuation(request, context);
        }

        public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream,
            ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
        {
            server.Record(context);
            return continuation(request, responseStream, context);
        }
    }

    private sealed class QueuePeer : QueueService.QueueServiceBase
    {
        public override Task<GetTaskResponse> GetTask(GetTaskRequest request, ServerCallContext context) =>
            Task.FromResult(new GetTaskResponse { Task = new Queue.V1.Task { Id = request.TaskId } });

        public override Task<EnqueueTaskResponse> EnqueueTask(EnqueueTaskRequest request, ServerCallContext context) =>
            Task.FromResult(new EnqueueTaskResponse());
    }

    private sealed class RegistryPeer : RegistryService.RegistryServiceBase
    {
        public override Task<ListWorkersResponse> ListWorkers(ListWorkersRequest request, ServerCallContext context) =>
            Task.FromResult(new ListWorkersResponse());

        public override Task<RegisterWorkerResponse> RegisterWorker(RegisterWorkerRequest request, ServerCallContext context) =>
            Task.FromResult(new RegisterWorkerResponse());

        public override async Task WatchWorkers(WatchWorkersRequest request, IServerStreamWriter<WatchWorkersResponse> responseStream, ServerCallContext context) =>
            await responseStream.WriteAsync(new WatchWorkersResponse());
    }

    private sealed class CheckpointPeer : CheckpointService.CheckpointServiceBase
    {
        public override Task<GetWorkflowResponse> GetWorkflow(GetWorkflowRequest request, ServerCallContext context) =>
            Task.FromResult(new GetWorkflowResponse());
    }

    private sealed class BackupPeer : BackupService.BackupServiceBase
    {
        public override Task<ListBackupsResponse> ListBackups(ListBackupsRequest request, ServerCallContext context) =>
            Task.FromResult(new ListBackupsResponse());
    }
}
