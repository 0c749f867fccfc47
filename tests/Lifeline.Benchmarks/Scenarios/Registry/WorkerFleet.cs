using System.Diagnostics;
using Grpc.Core;
using Lifeline.Benchmarks.Client;
using Lifeline.Benchmarks.Measurement;
using Lifeline.Registry.V1;

namespace Lifeline.Benchmarks.Scenarios.Registry;

/// <summary>One registered simulated worker: its id, session epoch, and when it last sent a heartbeat.</summary>
internal sealed class FleetWorker(int index, string name)
{
    private long _lastBeat;
    private int _unaryPending;

    public int Index { get; } = index;

    public string Name { get; } = name;

    public string Id { get; private set; } = "";

    public long SessionEpoch { get; private set; }

    public bool Registered => SessionEpoch > 0;

    /// <summary>Stopwatch timestamp of the last heartbeat sent (or of the registration, which starts the clock).</summary>
    public long LastBeat => Interlocked.Read(ref _lastBeat);

    /// <summary>The heartbeat this worker sends (built once; a message is only read while it is sent).</summary>
    public HeartbeatRequest Beat { get; private set; } = new();

    public void SetRegistered(Worker worker, long at)
    {
        Id = worker.Id;
        SessionEpoch = worker.SessionEpoch;
        Beat = new HeartbeatRequest { WorkerId = worker.Id, SessionEpoch = worker.SessionEpoch, Status = WorkerStatus.Online, Load = 0.25 };
        MarkBeat(at);
    }

    public void MarkBeat(long at) => Interlocked.Exchange(ref _lastBeat, at);

    /// <summary>
    /// Claims the worker's unary heartbeat slot: false while its previous Heartbeat call is unanswered, as a
    /// real worker's beat loop awaits each call before the next.
    /// </summary>
    public bool TryBeginUnaryBeat() => Interlocked.CompareExchange(ref _unaryPending, 1, 0) == 0;

    public void EndUnaryBeat() => Volatile.Write(ref _unaryPending, 0);
}

/// <summary>
/// The simulated workers of the registry scenarios, and their keep-alive: real workers keep beating at the
/// interval RegisterWorker gave them whether or not a scenario is measuring them, so a worker must not
/// lapse (and be reported lost) between scenarios or while the others register. The keep-alive sends a
/// unary Heartbeat for every registered worker whose last beat is one interval old; a scenario that beats
/// more often leaves it nothing to do. It is paused while a scenario measures PostgreSQL writes.
/// </summary>
internal sealed class WorkerFleet : IAsyncDisposable
{
    private const int MaxKeepAliveInFlight = 256;
    private static readonly TimeSpan KeepAlivePass = TimeSpan.FromMilliseconds(250);
    private readonly RegistryConnection _connection;
    private readonly SemaphoreSlim _inFlight = new(MaxKeepAliveInFlight);
    private readonly CancellationTokenSource _stop = new();
    private Task? _keepAlive;
    private long _interval;
    private volatile bool _paused;
    private long _keepAliveBeats;

    public WorkerFleet(RegistryConnection connection, int size, string namePrefix)
    {
        _connection = connection;
        Workers = Enumerable.Range(0, size).Select(i => new FleetWorker(i, $"{namePrefix}-{i + 1:D5}")).ToArray();
    }

    public IReadOnlyList<FleetWorker> Workers { get; }

    /// <summary>Heartbeats the keep-alive sent, and its failed calls (every one a problem: it means a worker may lapse).</summary>
    public long KeepAliveBeats => Interlocked.Read(ref _keepAliveBeats);

    public CallErrors KeepAliveErrors { get; } = new();

    /// <summary>Starts beating registered workers every <paramref name="interval"/> (the interval RegisterWorker answered).</summary>
    public void StartKeepAlive(TimeSpan interval)
    {
        Interlocked.Exchange(ref _interval, (long)(interval.TotalSeconds * Stopwatch.Frequency));
        _keepAlive ??= Task.Run(() => KeepAliveAsync(_stop.Token));
    }

    public void Pause() => _paused = true;

    public void Resume() => _paused = false;

    private async Task KeepAliveAsync(CancellationToken ct)
    {
        var pending = new List<Task>();
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(KeepAlivePass, ct);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            if (_paused)
            {
                continue;
            }

            var now = Stopwatch.GetTimestamp();
            var interval = Interlocked.Read(ref _interval);
            foreach (var worker in Workers)
            {
                if (worker.Registered && now - worker.LastBeat >= interval && worker.TryBeginUnaryBeat())
                {
                    worker.MarkBeat(now);
                    pending.Add(BeatAsync(worker, ct));
                }
            }

            pending.RemoveAll(t => t.IsCompleted);
        }

        await Task.WhenAll(pending);
    }

    private async Task BeatAsync(FleetWorker worker, CancellationToken ct)
    {
        try
        {
            await _inFlight.WaitAsync(ct);
        }
        catch (OperationCanceledException)
        {
            worker.EndUnaryBeat();
            return;
        }

        try
        {
            await _connection.Registry.HeartbeatAsync(worker.Beat, RegistryConnection.Call(ct));
            Interlocked.Increment(ref _keepAliveBeats);
        }
        catch (RpcException) when (ct.IsCancellationRequested)
        {
        }
        catch (RpcException ex)
        {
            KeepAliveErrors.Record("Heartbeat (keep-alive)", ex);
        }
        finally
        {
            _inFlight.Release();
            worker.EndUnaryBeat();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_keepAlive is not null)
        {
            await _keepAlive;
        }

        _stop.Dispose();
        _inFlight.Dispose();
    }
}
