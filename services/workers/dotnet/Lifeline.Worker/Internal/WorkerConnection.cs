using Grpc.Core;
using Grpc.Core.Interceptors;
using Grpc.Net.Client;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;

namespace Lifeline.Worker.Internal;

/// <summary>The channels to the gateway (or to the queue and registry directly) and the clients on them.</summary>
internal sealed class WorkerConnection : IDisposable
{
    private readonly GrpcChannel _channel;
    private readonly GrpcChannel? _registryChannel;
    private readonly TimeSpan _callTimeout;
    private DispatchStream? _dispatch;

    public WorkerConnection(LifelineWorkerOptions options)
    {
        _callTimeout = options.CallTimeout;
        _channel = OpenChannel(options.Target!);
        Queue = new QueueService.QueueServiceClient(WithCredentials(_channel, options));
        Checkpoints = new Checkpoint.V1.CheckpointService.CheckpointServiceClient(WithCredentials(_channel, options));
        if (options.RegistryTarget is { } registryTarget && registryTarget != options.Target)
        {
            _registryChannel = OpenChannel(registryTarget);
            Registry = new RegistryService.RegistryServiceClient(WithCredentials(_registryChannel, options));
        }
        else
        {
            Registry = new RegistryService.RegistryServiceClient(WithCredentials(_channel, options));
        }
    }

    public QueueService.QueueServiceClient Queue { get; }

    public RegistryService.RegistryServiceClient Registry { get; }

    /// <summary>The checkpoint service, through the same target as the queue (the gateway routes it).</summary>
    public Checkpoint.V1.CheckpointService.CheckpointServiceClient Checkpoints { get; }

    /// <summary>The dispatch stream now open, if any: the holder calls below go over it while it is open, else unary.</summary>
    public DispatchStream? Dispatch
    {
        get => Volatile.Read(ref _dispatch);
        set => Volatile.Write(ref _dispatch, value);
    }

    private DispatchStream? OpenDispatch => Dispatch is { IsOpen: true } stream ? stream : null;

    /// <summary>Whether outcomes go over an open dispatch stream (the queue groups them) rather than unary calls.</summary>
    public bool DispatchOpen => OpenDispatch is not null;

    public Task<CompleteTasksResponse> CompleteTasksAsync(CompleteTasksRequest request, CallOptions options) =>
        OpenDispatch is { } stream ? stream.CompleteTasksAsync(request, options) : Queue.CompleteTasksAsync(request, options).ResponseAsync;

    public Task<FailTaskResponse> FailTaskAsync(FailTaskRequest request, CallOptions options) =>
        OpenDispatch is { } stream ? stream.FailTaskAsync(request, options) : Queue.FailTaskAsync(request, options).ResponseAsync;

    public Task<ReleaseTaskResponse> ReleaseTaskAsync(ReleaseTaskRequest request, CallOptions options) =>
        OpenDispatch is { } stream ? stream.ReleaseTaskAsync(request, options) : Queue.ReleaseTaskAsync(request, options).ResponseAsync;

    public Task<ExtendLeaseResponse> ExtendLeaseAsync(ExtendLeaseRequest request, CallOptions options) =>
        OpenDispatch is { } stream ? stream.ExtendLeaseAsync(request, options) : Queue.ExtendLeaseAsync(request, options).ResponseAsync;

    public Task<ReportProgressResponse> ReportProgressAsync(ReportProgressRequest request, CallOptions options) =>
        OpenDispatch is { } stream ? stream.ReportProgressAsync(request, options) : Queue.ReportProgressAsync(request, options).ResponseAsync;

    /// <summary>Options of a unary call: the configured deadline plus <paramref name="extra"/> (a long poll's wait).</summary>
    public CallOptions CallOptions(CancellationToken cancellationToken, TimeSpan extra = default) =>
        new(deadline: DateTime.UtcNow + _callTimeout + extra, cancellationToken: cancellationToken);

    public void Dispose()
    {
        _channel.Dispose();
        _registryChannel?.Dispose();
    }

    /// <summary>
    /// A channel whose connection is pinged every 10 s (also while idle), as the Node and Python libraries do: a
    /// connection that went silent (a black-holed network, a peer that vanished) is dropped after 10 s without an
    /// answer, and the next call opens a new one, rather than waiting on the dead one until each call's deadline.
    /// </summary>
    private static GrpcChannel OpenChannel(Uri target) => GrpcChannel.ForAddress(target, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            KeepAlivePingDelay = TimeSpan.FromSeconds(10),
            KeepAlivePingTimeout = TimeSpan.FromSeconds(10),
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            EnableMultipleHttp2Connections = true,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
        },
        DisposeHttpClient = true,
    });

    /// <summary>
    /// Adds <c>authorization: Bearer</c> to every call (the gateway derives the tenant and role from it). Metadata rather
    /// than call credentials: gRPC only sends call credentials over TLS, and the local gateway speaks cleartext HTTP/2.
    /// </summary>
    private static CallInvoker WithCredentials(GrpcChannel channel, LifelineWorkerOptions options)
    {
        var apiKey = options.ApiKey;
        return channel.Intercept(metadata =>
        {
            if (!string.IsNullOrEmpty(apiKey))
            {
                metadata.Add("authorization", $"Bearer {apiKey}");
            }

            return metadata;
        });
    }
}
