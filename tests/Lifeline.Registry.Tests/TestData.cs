using Google.Rpc;
using Grpc.Core;
using Lifeline.Registry.V1;

namespace Lifeline.Registry.Tests;

internal static class TestData
{
    public static RegisterWorkerRequest Registration(string? name = null, WorkerType type = WorkerType.Standalone, params string[] capabilities)
    {
        var request = new RegisterWorkerRequest
        {
            Name = name ?? $"worker-{Guid.NewGuid():N}"[..20],
            Type = type,
            Metadata = new WorkerMetadata
            {
                Version = "1.2.3",
                Resources = new Resources { Cpu = 2, MemoryMb = 4096, DiskMb = 10240 },
                MaxConcurrentTasks = 4,
                Location = new Location { Region = "eu-west-1", Zone = "eu-west-1a" },
            },
        };
        request.Capabilities.AddRange(capabilities.Length == 0 ? ["email.send"] : capabilities);
        return request;
    }

    public static async Task<Worker> RegisterAsync(this RegistryService.RegistryServiceClient client, RegisterWorkerRequest request) =>
        (await client.RegisterWorkerAsync(request)).Worker;

    public static Task<HeartbeatResponse> BeatAsync(this RegistryService.RegistryServiceClient client, Worker worker, params string[] running)
    {
        var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Online };
        beat.RunningTaskIds.AddRange(running);
        return client.HeartbeatAsync(beat, deadline: DateTime.UtcNow.AddSeconds(30)).ResponseAsync;
    }

    /// <summary>Heartbeats for a worker every 300 ms until disposed (a live worker).</summary>
    public static IAsyncDisposable KeepBeating(this RegistryService.RegistryServiceClient client, Worker worker)
    {
        var stop = new CancellationTokenSource();
        var loop = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await client.BeatAsync(worker);
                    await Task.Delay(300, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        return new Beating(stop, loop);
    }

    /// <summary>
    /// A live worker through outages: heartbeats every 300 ms (each with a deadline) through whichever registry
    /// <paramref name="client"/> gives at the time, and carries on when a beat fails, until disposed.
    /// </summary>
    public static IAsyncDisposable KeepBeatingThroughOutages(Func<RegistryService.RegistryServiceClient> client, Worker worker)
    {
        var stop = new CancellationTokenSource();
        var loop = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Online };
                    await client().HeartbeatAsync(beat, deadline: Deadline(1), cancellationToken: stop.Token);
                }
                catch (RpcException) when (!stop.IsCancellationRequested)
                {
                    // the registry (or its store) is down: the worker keeps trying, as a real one does
                }
                catch (Exception e) when (stop.IsCancellationRequested && e is OperationCanceledException or RpcException)
                {
                    return;
                }
                try
                {
                    await Task.Delay(300, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });
        return new Beating(stop, loop);
    }

    private sealed class Beating(CancellationTokenSource stop, Task loop) : IAsyncDisposable
    {
        private int _disposed;

        /// <summary>Stops beating (once; a test may stop it early, before the host it beats against stops).</summary>
        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 1)
            {
                return;
            }
            await stop.CancelAsync();
            await loop;
            stop.Dispose();
        }
    }

    public static async Task<Google.Rpc.Status> RefusedAsync<T>(Func<Task<T>> call, StatusCode code)
    {
        var ex = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, ex.StatusCode);
        return ex.GetRpcStatus()!;
    }

    public static ErrorInfo ErrorInfo(this Google.Rpc.Status status) => status.GetDetail<ErrorInfo>()!;

    public static BadRequest BadRequest(this Google.Rpc.Status status) => status.GetDetail<BadRequest>()!;

    /// <summary>A deadline for one call: every call in a test carries one.</summary>
    public static DateTime Deadline(double seconds = 10) => DateTime.UtcNow.AddSeconds(seconds);

    /// <summary>Polls until <paramref name="condition"/> holds or the timeout passes.</summary>
    public static async Task<bool> EventuallyAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            if (await condition())
            {
                return true;
            }
            await Task.Delay(50);
        }
        return await condition();
    }
}
