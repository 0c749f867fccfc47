using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.Worker.Internal;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RetryPolicy = Lifeline.Worker.Internal.RetryPolicy;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker;

/// <summary>
/// A Lifeline worker shaped as a <see cref="BackgroundService"/>: it registers with the registry, heartbeats,
/// leases tasks of its handlers' types with a long poll, runs them and reports their outcomes with the lease's
/// fencing token — and never drops an outcome because the network failed.
/// </summary>
/// <remarks>
/// <para>
/// While it runs: a heartbeat every <c>heartbeat_interval</c> (from registration) over one <c>HeartbeatStream</c>
/// reports the running tasks and receives commands — <c>drain</c> stops leasing, lets running tasks finish, then ends
/// the worker; <c>cancel_task</c> cancels that task's handler token (<see cref="TaskCancellationReason.TaskCancelled"/>).
/// Tasks are leased and started in one call (<c>LeaseTasks</c> with <c>start</c>). Leases of running tasks are extended
/// by progress reports and, for handlers that stay silent, by a lease keeper every third of
/// <see cref="LifelineWorkerOptions.LeaseDuration"/>. Completions that finish together go out as one
/// <c>CompleteTasks</c> call (after at most <see cref="LifelineWorkerOptions.OutcomeBatchWindow"/>).
/// </para>
/// <para>
/// When the network fails (<see cref="ConnectionState"/>): an outcome whose call fails transiently is retried twice at
/// once, then with exponential backoff and full jitter (100 ms × 2ⁿ, at most 5 s a wait) until
/// <see cref="LifelineWorkerOptions.OfflineAfter"/> has passed; then the worker is offline: outcomes are appended to the
/// journal (<see cref="JournalPath"/>, fsynced), leasing stops, held handlers keep running and the gateway is probed by
/// extending their leases. The first answer starts the sync: the journal is replayed in order, then leasing resumes. A
/// final refusal (stale fencing token, task no longer running, …) is logged once, counted in
/// <see cref="WorkerStatistics.Refused"/> and never retried. A worker started with a journal left by an earlier run
/// replays it before leasing.
/// </para>
/// <para>
/// Shutdown is ordered: (1) stop leasing; (2) tell in-flight work through its cancellation token
/// (<see cref="TaskCancellationReason.WorkerStopping"/>); (3) await it up to <see cref="LifelineWorkerOptions.ShutdownGrace"/>;
/// (4) flush the outcome batch — outcomes still undelivered go to the journal; (5) release every task still held, so it
/// is leased again at once without using an attempt; (6) stop heartbeating; (7) deregister; (8) close the channel.
/// Releasing and deregistering are skipped while offline.
/// </para>
/// </remarks>
public sealed partial class LifelineWorker : BackgroundService
{
    private static readonly TimeSpan MaxRefusedBackoff = TimeSpan.FromSeconds(10);

    /// <summary>The wait after a transient failure of the lease path (long poll or stream): the retry policy's jittered backoff.</summary>
    private static TimeSpan TransientBackoff(RetryPolicy policy, ref int failures) =>
        policy.Jittered(Math.Min(failures++, 30), Random.Shared.NextDouble());

    /// <summary>The wait after a refusal the queue may lift (not a network failure): 0.5 s doubling, at most <see cref="MaxRefusedBackoff"/>.</summary>
    private static TimeSpan RefusedBackoff(ref int failures) =>
        TimeSpan.FromTicks(Math.Min(TimeSpan.FromMilliseconds(500).Ticks << Math.Min(failures++, 10), MaxRefusedBackoff.Ticks));

    private readonly LifelineWorkerOptions _options;
    private readonly Dictionary<string, ITaskHandler> _handlers;
    private readonly ILogger<LifelineWorker> _logger;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly ConcurrentDictionary<string, RunningTask> _running = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _tellInFlight = new();
    private readonly CancellationTokenSource _stopPolling = new();
    private readonly SemaphoreSlim _freeSlots;
    private readonly System.Threading.Channels.Channel<bool> _slotsChanged = System.Threading.Channels.Channel.CreateBounded<bool>(
        new System.Threading.Channels.BoundedChannelOptions(1) { FullMode = System.Threading.Channels.BoundedChannelFullMode.DropWrite });
    private readonly WorkerStatistics _statistics = new();
    private TimeSpan _heartbeatInterval = TimeSpan.FromSeconds(5);
    private long _sessionEpoch;
    private int _taken;
    private volatile string? _finishedBecause;
    private volatile bool _draining;
    private volatile bool _superseded;
    private volatile ConnectionMonitor? _monitor;

    /// <summary>Creates the worker; normally done by <see cref="LifelineWorkerServiceCollectionExtensions.AddLifelineWorker"/>.</summary>
    /// <param name="options">Validated options.</param>
    /// <param name="handlers">One handler per task type; at least one.</param>
    /// <param name="logger">Logger.</param>
    /// <param name="lifetime">When given, stopped once the worker finishes on its own (see <see cref="LifelineWorkerOptions.StopHostWhenFinished"/>).</param>
    /// <exception cref="InvalidOperationException">No handler, or two handlers for one task type.</exception>
    public LifelineWorker(
        IOptions<LifelineWorkerOptions> options,
        IEnumerable<ITaskHandler> handlers,
        ILogger<LifelineWorker> logger,
        IHostApplicationLifetime? lifetime = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handlers);
        _options = options.Value;
        _logger = logger;
        _lifetime = lifetime;
        _handlers = new Dictionary<string, ITaskHandler>(StringComparer.Ordinal);
        foreach (var handler in handlers)
        {
            if (!_handlers.TryAdd(handler.TaskType, handler))
            {
                throw new InvalidOperationException(
                    $"Two task handlers for the type '{handler.TaskType}': {_handlers[handler.TaskType].GetType().Name} and {handler.GetType().Name}.");
            }
        }

        if (_handlers.Count == 0)
        {
            throw new InvalidOperationException("A Lifeline worker needs at least one ITaskHandler (AddTaskHandler).");
        }

        _freeSlots = new SemaphoreSlim(_options.MaxConcurrentTasks, _options.MaxConcurrentTasks);
    }

    /// <summary>
    /// Raised on every change of <see cref="ConnectionState"/>, in order, on the thread that caused it. Keep handlers
    /// short; an exception they throw is logged and ignored.
    /// </summary>
    public event EventHandler<ConnectionStateChangedEventArgs>? ConnectionStateChanged;

    /// <summary>The id the registry gave this worker; null until registered.</summary>
    public string? WorkerId { get; private set; }

    /// <summary>The task types this worker runs (its capabilities).</summary>
    public IReadOnlyCollection<string> TaskTypes => _handlers.Keys;

    /// <summary>What the worker has done so far.</summary>
    public WorkerStatistics Statistics => _statistics;

    /// <summary>
    /// How the worker stands with the gateway: <see cref="ConnectionState.Connected"/> before it starts (or
    /// <see cref="ConnectionState.Offline"/> from the start when an earlier run left a journal).
    /// </summary>
    public ConnectionState ConnectionState => _monitor?.State ?? ConnectionState.Connected;

    /// <summary>The offline journal's file: <c>&lt;JournalDirectory&gt;/&lt;Name&gt;.journal</c> (absolute); it exists only while it holds entries.</summary>
    public string JournalPath => Path.Combine(Path.GetFullPath(_options.JournalDirectory), OutcomeJournal.FileNameFor(_options.Name));

    /// <summary>Why the worker ended on its own (drained, enough tasks done, session taken over); null otherwise.</summary>
    public string? FinishedBecause => _finishedBecause;

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var journal = OutcomeJournal.Open(_options.JournalDirectory, _options.Name);
        if (journal.UnreadableLines > 0)
        {
            LogJournalDamaged(journal.FilePath, journal.UnreadableLines);
        }

        if (!journal.IsEmpty)
        {
            LogJournalFound(journal.Count, journal.FilePath);
        }

        var policy = new RetryPolicy(_options.OfflineAfter);
        var monitor = new ConnectionMonitor(_options.OfflineAfter, OnConnectionStateChanged,
            journal.IsEmpty ? ConnectionState.Connected : ConnectionState.Offline);
        _monitor = monitor;
        using var connection = new WorkerConnection(_options);
        var delivery = new OutcomeDelivery(connection, monitor, journal, policy, _statistics, _options, _logger);
        var heartbeats = new Heartbeats(connection, monitor, _options, policy, NextBeat, OnCommand, OnSuperseded, _logger);
        var leaseKeeper = new LeaseKeeper(connection, monitor, journal, heartbeats, () => WorkerId is not null, _options, HeldTasks, _logger);
        var session = new Session(connection, monitor, delivery, heartbeats);

        using var background = new CancellationTokenSource();
        // An earlier run's journal is replayed from here, before anything is leased (leasing waits until connected).
        var reconnecting = new Reconnector(monitor, leaseKeeper, delivery, policy).RunAsync(background.Token);
        var beating = Task.CompletedTask;
        var keeping = Task.CompletedTask;
        try
        {
            await RegisterAsync(connection, monitor, stoppingToken).ConfigureAwait(false);
            heartbeats.Interval = _heartbeatInterval;
            beating = heartbeats.RunAsync(background.Token);
            keeping = leaseKeeper.RunAsync(background.Token);
            using (var polling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _stopPolling.Token))
            {
                if (!_options.UseDispatchStream || !await DispatchAsync(session, policy, polling.Token).ConfigureAwait(false))
                {
                    await PollAsync(session, policy, polling.Token).ConfigureAwait(false);
                }
            }

            if (!stoppingToken.IsCancellationRequested)
            {
                // Finished on its own (drained, enough tasks): running tasks end normally, and what they journaled is
                // delivered, unless the host stops first.
                await WhenRunningTasksEndAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
                if (monitor.Journaling && !_superseded)
                {
                    LogWaitingForSync(journal.Count);
                    await monitor.WhenNotJournaling.WaitAsync(stoppingToken).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The host is stopping: the ordinary way to end.
        }
        finally
        {
            await ShutDownAsync(session, background, beating, keeping, reconnecting).ConfigureAwait(false);
        }

        if (_finishedBecause is not null && _options.StopHostWhenFinished)
        {
            _lifetime?.StopApplication();
        }
    }

    /// <inheritdoc />
    public override void Dispose()
    {
        _tellInFlight.Dispose();
        _stopPolling.Dispose();
        _freeSlots.Dispose();
        base.Dispose();
    }

    private async Task RegisterAsync(WorkerConnection connection, ConnectionMonitor monitor, CancellationToken cancellationToken)
    {
        var request = new RegisterWorkerRequest
        {
            Name = _options.Name,
            Type = WorkerType.Standalone,
            Capabilities = { _handlers.Keys.Order(StringComparer.Ordinal) },
            Metadata = new WorkerMetadata
            {
                Version = _options.Version,
                MaxConcurrentTasks = _options.MaxConcurrentTasks,
                Tags = { ["language"] = "dotnet" },
            },
        };

        var deadline = DateTime.UtcNow + _options.RegistrationTimeout;
        while (true)
        {
            var started = monitor.Timestamp;
            try
            {
                var response = await connection.Registry.RegisterWorkerAsync(request, connection.CallOptions(cancellationToken)).ConfigureAwait(false);
                monitor.ReportSuccess("registered");
                WorkerId = response.Worker.Id;
                _sessionEpoch = response.Worker.SessionEpoch;
                if (response.HeartbeatInterval?.ToTimeSpan() is { } interval && interval > TimeSpan.Zero)
                {
                    _heartbeatInterval = interval;
                }

                LogRegistered(_options.Name, WorkerId, _sessionEpoch, _heartbeatInterval, string.Join(", ", request.Capabilities));
                return;
            }
            catch (RpcException ex) when (RpcErrors.IsTransient(ex) && DateTime.UtcNow < deadline && !cancellationToken.IsCancellationRequested)
            {
                // The suite may be starting, or a service restarting.
                monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (RegisterWorker)", started);
                LogRegistrationRetry(RpcErrors.Describe(ex));
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task PollAsync(Session session, RetryPolicy policy, CancellationToken cancellationToken)
    {
        var (connection, monitor) = (session.Connection, session.Monitor);
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            // Offline or syncing: lease nothing until the journal is replayed. (Retrying, it leases: a lease call that
            // succeeds is what brings the state back to connected, one that keeps failing what takes it offline.)
            await monitor.WhenNotJournaling.WaitAsync(cancellationToken).ConfigureAwait(false);
            await _freeSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
            var capacity = 1;
            while (capacity < _options.MaxConcurrentTasks && _freeSlots.Wait(0))
            {
                capacity++;
            }

            if (_options.StopAfterTasks is { } limit)
            {
                var remaining = limit - Volatile.Read(ref _taken);
                if (remaining <= 0)
                {
                    _freeSlots.Release(capacity);
                    Finish($"{limit} task(s) done");
                    return;
                }

                if (capacity > remaining)
                {
                    _freeSlots.Release(capacity - remaining);
                    capacity = remaining;
                }
            }

            LeaseTasksResponse response;
            try
            {
                response = await connection.Queue.LeaseTasksAsync(
                    new LeaseTasksRequest
                    {
                        WorkerId = WorkerId,
                        TaskTypes = { _handlers.Keys },
                        MaxTasks = capacity,
                        LeaseDuration = Duration.FromTimeSpan(_options.LeaseDuration),
                        Wait = Duration.FromTimeSpan(_options.PollWait),
                        Start = true,
                    },
                    connection.CallOptions(cancellationToken, _options.PollWait)).ConfigureAwait(false);
                monitor.ReportSuccess();
                failures = 0;
            }
            catch (Exception ex) when (ex is RpcException or OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                _freeSlots.Release(capacity);
                return;
            }
            catch (RpcException ex) when (RpcErrors.Reason(ex) == "WORKER_DRAINING")
            {
                _freeSlots.Release(capacity);
                Drain("the queue says this worker is draining");
                return;
            }
            catch (RpcException ex)
            {
                _freeSlots.Release(capacity);
                TimeSpan backoff;
                if (RpcErrors.Reason(ex) == "WORKER_OFFLINE")
                {
                    // The registry lost this worker's heartbeat (an outage): one beat now brings it back.
                    monitor.ReportSuccess("the queue answered");
                    session.Heartbeats.BeatNow();
                    backoff = TransientBackoff(policy, ref failures);
                }
                else if (RpcErrors.IsTransient(ex))
                {
                    monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (LeaseTasks)");
                    backoff = TransientBackoff(policy, ref failures);
                }
                else
                {
                    monitor.ReportSuccess("the queue answered");
                    backoff = RefusedBackoff(ref failures);
                }

                LogLeaseFailed(RpcErrors.Describe(ex), backoff);
                await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
                continue;
            }

            if (response.Tasks.Count < capacity)
            {
                _freeSlots.Release(capacity - response.Tasks.Count);
            }

            foreach (var task in response.Tasks)
            {
                StartTask(session, task, pushedOn: null);
            }
        }
    }

    /// <summary>Runs a leased (and started) task's handler; the task holds one of <see cref="_freeSlots"/>, taken by the caller.</summary>
    private void StartTask(Session session, Queue.V1.Task task, DispatchStream? pushedOn)
    {
        Interlocked.Increment(ref _taken);
        var running = new RunningTask(new TaskContext(task, WorkerId!, session.Connection, session.Monitor, _options, _tellInFlight.Token), pushedOn);
        _running[task.Id] = running;
        _ = Task.Run(() => RunTaskAsync(session, running), CancellationToken.None);
    }

    /// <summary>
    /// Leasing over the dispatch stream (<c>QueueService/Dispatch</c>): one stream at a time, opened with the free slots;
    /// the queue pushes tasks leased and started as slots free up, and outcomes, progress, lease extensions and releases go
    /// over the same stream while it is open (<see cref="WorkerConnection"/> routes them; unary otherwise). The stream is
    /// closed while the worker is offline or syncing (it leases nothing then) and opened again after; a broken one is
    /// opened again after a backoff. Returns false when the queue does not know the stream (UNIMPLEMENTED): the caller
    /// leases with the long poll instead.
    /// </summary>
    private async Task<bool> DispatchAsync(Session session, RetryPolicy policy, CancellationToken cancellationToken)
    {
        var (connection, monitor) = (session.Connection, session.Monitor);
        var failures = 0;
        while (!cancellationToken.IsCancellationRequested)
        {
            await monitor.WhenNotJournaling.WaitAsync(cancellationToken).ConfigureAwait(false);
            if (RemainingTasks() <= 0)
            {
                Finish($"{_options.StopAfterTasks} task(s) done");
                return true;
            }

            var slots = StreamSlots(null, held: 0);
            if (slots <= 0)
            {
                // Every slot is held by tasks leased before: open once one frees up.
                await _freeSlots.WaitAsync(cancellationToken).ConfigureAwait(false);
                _freeSlots.Release();
                continue;
            }

            RpcException? end;
            bool closedHere;
            var stream = await DispatchStream.OpenAsync(connection.Queue, WorkerId!, _handlers.Keys, slots, _options.LeaseDuration, CancellationToken.None)
                .ConfigureAwait(false);
            await using (stream.ConfigureAwait(false))
            {
                connection.Dispatch = stream;
                LogDispatchOpened(slots);
                try
                {
                    (end, closedHere) = await ServeStreamAsync(session, stream, cancellationToken).ConfigureAwait(false);
                }
                finally
                {
                    connection.Dispatch = null;
                }
            }

            if (cancellationToken.IsCancellationRequested)
            {
                return true;
            }

            TimeSpan backoff;
            if (end is null || closedHere)
            {
                // Ended by the queue (an instance stopping), or closed here (offline: how it ended says nothing of the
                // network): open another at once, once the worker may lease again.
                failures = 0;
                continue;
            }

            if (end.StatusCode == StatusCode.Unimplemented)
            {
                monitor.ReportSuccess("the queue answered");
                LogDispatchUnavailable(RpcErrors.Describe(end));
                return false;
            }

            if (RpcErrors.Reason(end) == "WORKER_DRAINING")
            {
                Drain("the queue says this worker is draining");
                return true;
            }

            if (RpcErrors.Reason(end) == "WORKER_OFFLINE")
            {
                monitor.ReportSuccess("the queue answered");
                session.Heartbeats.BeatNow();
                backoff = TransientBackoff(policy, ref failures);
            }
            else if (RpcErrors.IsTransient(end) || end.StatusCode == StatusCode.Cancelled)
            {
                // Counted from now: a stream that broke after hours did not fail for hours.
                monitor.ReportTransientFailure($"{RpcErrors.Describe(end)} (Dispatch)");
                backoff = TransientBackoff(policy, ref failures);
            }
            else
            {
                monitor.ReportSuccess("the queue answered");
                backoff = RefusedBackoff(ref failures);
            }

            LogDispatchEnded(RpcErrors.Describe(end), backoff);
            await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
        }

        return true;
    }

    /// <summary>Takes the pushed tasks of one stream until it ends, the worker goes offline or leasing stops; returns how the stream ended.</summary>
    private async Task<(RpcException? End, bool ClosedHere)> ServeStreamAsync(Session session, DispatchStream stream, CancellationToken cancellationToken)
    {
        using var keeping = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var slots = KeepStreamSlotsAsync(stream, keeping.Token);
        var offline = session.Monitor.WhenOffline;
        var stopping = Task.Delay(Timeout.Infinite, cancellationToken);
        var closedHere = false;
        try
        {
            while (true)
            {
                var next = stream.Tasks.WaitToReadAsync(CancellationToken.None).AsTask();
                await Task.WhenAny(next, offline, stopping).ConfigureAwait(false);
                if (!next.IsCompleted)
                {
                    // Offline (outcomes go to the journal, nothing is leased) or stopping: the queue answers what was sent, then ends it.
                    closedHere = true;
                    await stream.CloseAsync(_options.CallTimeout).ConfigureAwait(false);
                    // Pushed before the close reached the queue: they are ours. Stopping, they go back at once; offline
                    // (nothing can be given back), they run, and their outcomes go to the journal.
                    TakePushed(session, stream, take: !cancellationToken.IsCancellationRequested);
                    break;
                }

                if (!await next.ConfigureAwait(false))
                {
                    break;
                }

                session.Monitor.ReportSuccess("a task was pushed");
                TakePushed(session, stream, take: true);
            }
        }
        finally
        {
            await keeping.CancelAsync().ConfigureAwait(false);
            await slots.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        return (await stream.Completion.ConfigureAwait(false), closedHere);
    }

    private void TakePushed(Session session, DispatchStream stream, bool take)
    {
        while (stream.Tasks.TryRead(out var task))
        {
            if (take && RemainingTasks() > 0 && _freeSlots.Wait(0))
            {
                StartTask(session, task, stream);
                if (RemainingTasks() <= 0)
                {
                    // --once: enough taken; the stream closes, the running tasks end normally.
                    Finish($"{_options.StopAfterTasks} task(s) done");
                }
            }
            else
            {
                // Pushed as the slots shrank (a capacity change on its way, --once reached) or as the worker stops: give it
                // back at once, no attempt used.
                _ = ReleaseAsync(session, task.Id, task.FencingToken, "not taken: no free slot");
            }
        }
    }

    /// <summary>
    /// Keeps the stream's slot count at what the worker can take: its free slots plus the tasks pushed on this stream and
    /// not yet ended there (the queue counts those itself) — less tasks leased before this stream, which hold local slots
    /// the queue does not know of — and, with <see cref="LifelineWorkerOptions.StopAfterTasks"/>, no more than remain to run.
    /// </summary>
    private async Task KeepStreamSlotsAsync(DispatchStream stream, CancellationToken cancellationToken)
    {
        Task<bool>? changed = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            // A handler that ended frees a slot at once; the 100 ms tick catches the rest (tasks ended on the stream, --once).
            changed ??= _slotsChanged.Reader.WaitToReadAsync(cancellationToken).AsTask();
            await Task.WhenAny(changed, Task.Delay(100, cancellationToken)).ConfigureAwait(false);
            if (changed.IsCompleted)
            {
                changed = null;
                _slotsChanged.Reader.TryRead(out _);
            }

            if (!stream.IsOpen || cancellationToken.IsCancellationRequested)
            {
                return;
            }

            await stream.SetSlotsAsync(StreamSlots(stream, stream.Held)).ConfigureAwait(false);
        }
    }

    /// <summary>The slots a stream should have (see <see cref="KeepStreamSlotsAsync"/>), 0 to <see cref="LifelineWorkerOptions.MaxConcurrentTasks"/>.</summary>
    private int StreamSlots(DispatchStream? stream, int held)
    {
        var leasedBefore = _running.Values.Count(r => r.HoldsSlot && (stream is null || !ReferenceEquals(r.PushedOn, stream)));
        var slots = _options.MaxConcurrentTasks - leasedBefore;
        return Math.Clamp(Math.Min(slots, held + RemainingTasks()), 0, _options.MaxConcurrentTasks);
    }

    /// <summary>How many more tasks may be taken (<see cref="LifelineWorkerOptions.StopAfterTasks"/>), else int.MaxValue / 2.</summary>
    private int RemainingTasks() => _options.StopAfterTasks is { } limit ? Math.Max(0, limit - Volatile.Read(ref _taken)) : int.MaxValue / 2;

    private async Task RunTaskAsync(Session session, RunningTask running)
    {
        var context = running.Context;
        using var scope = _logger.BeginScope(new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["TaskId"] = context.TaskId,
            ["TaskType"] = context.TaskType,
            ["WorkerId"] = context.WorkerId,
        });
        try
        {
            LogStarted(context.TaskId, context.TaskType, context.FencingToken, context.Attempt);
            Func<Task> report;
            try
            {
                var result = await _handlers[context.TaskType].HandleAsync(context, context.CancellationToken).ConfigureAwait(false);
                report = () => ReportCompletionAsync(session, running, result);
            }
            catch (TaskFailedException ex)
            {
                var error = new JournalError(ex.Code, Truncate(ex.Message, 4096), ex.Retryable, new Dictionary<string, string>(ex.Details, StringComparer.Ordinal));
                report = () => ReportFailureAsync(session, running, error, ex.RetryAfter);
            }
            catch (Exception ex) when (context.CancellationToken.IsCancellationRequested)
            {
                // The handler stopped because it was told to (or failed while being told to): no failure to report.
                report = () => GiveUpAsync(session, running, ex is OperationCanceledException ? null : ex);
            }
#pragma warning disable CA1031 // A handler's unexpected exception fails its task; it must not take the worker down.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogHandlerFailed(ex, context.TaskId);
                var error = new JournalError(
                    "UNHANDLED_EXCEPTION", Truncate($"{ex.GetType().Name}: {ex.Message}", 4096), Retryable: true, new Dictionary<string, string>());
                report = () => ReportFailureAsync(session, running, error, retryAfter: null);
            }

            // The handler is done: its slot takes new work while the outcome goes out (the task stays held, its lease
            // kept, until the outcome is accepted, refused or journaled).
            FreeSlot(running);
            await report().ConfigureAwait(false);
        }
        finally
        {
            _running.TryRemove(context.TaskId, out _);
            FreeSlot(running);
            running.Ended.TrySetResult();
            context.Dispose();
        }
    }

    private void FreeSlot(RunningTask running)
    {
        if (!running.TryFreeSlot())
        {
            return;
        }

        try
        {
            _freeSlots.Release();
            _slotsChanged.Writer.TryWrite(true);
        }
        catch (ObjectDisposedException)
        {
            // A handler that outlived the worker (its task was released at shutdown).
        }
    }

    private async Task ReportCompletionAsync(Session session, RunningTask running, string? result)
    {
        if (!running.TryClaimOutcome())
        {
            return; // released at shutdown meanwhile
        }

        var context = running.Context;
        if (context.CancellationReason is TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost)
        {
            Abandon(session, context);
            return;
        }

        await session.Delivery.CompleteAsync(context.TaskId, context.FencingToken, result, context.UnsentProgress).ConfigureAwait(false);
    }

    private async Task ReportFailureAsync(Session session, RunningTask running, JournalError error, TimeSpan? retryAfter)
    {
        if (!running.TryClaimOutcome())
        {
            return;
        }

        var context = running.Context;
        if (context.CancellationReason is TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost)
        {
            Abandon(session, context);
            return;
        }

        await session.Delivery.FailAsync(context.TaskId, context.FencingToken, error, retryAfter, context.UnsentProgress).ConfigureAwait(false);
    }

    /// <summary>The handler stopped because its token was cancelled: release if the worker is stopping, else report nothing.</summary>
    private async Task GiveUpAsync(Session session, RunningTask running, Exception? exception)
    {
        if (!running.TryClaimOutcome())
        {
            return;
        }

        if (exception is not null)
        {
            LogHandlerFailedWhileCancelled(exception, running.Context.TaskId);
        }

        if (running.Context.CancellationReason == TaskCancellationReason.WorkerStopping)
        {
            await ReleaseAsync(session, running.Context, "worker stopping").ConfigureAwait(false);
        }
        else
        {
            Abandon(session, running.Context);
        }
    }

    private void Abandon(Session session, TaskContext context)
    {
        LogAbandoned(context.TaskId, context.CancellationReason);
        _statistics.AddAbandoned();
        if (session.Connection.Dispatch is { IsOpen: true } stream && stream.Holds(context.TaskId))
        {
            // No outcome will come: a release (refused, most likely) frees the task's slot on the stream.
            _ = stream.ReleaseTaskAsync(new ReleaseTaskRequest { TaskId = context.TaskId, FencingToken = context.FencingToken, Reason = "abandoned" },
                session.Connection.CallOptions(CancellationToken.None)).ContinueWith(static t => _ = t.Exception, TaskScheduler.Default);
        }
    }

    private Task ReleaseAsync(Session session, TaskContext context, string reason) => ReleaseAsync(session, context.TaskId, context.FencingToken, reason);

    private async Task ReleaseAsync(Session session, string taskId, long fencingToken, string reason)
    {
        if (session.Monitor.Journaling)
        {
            LogNotReleasedOffline(taskId);
            return;
        }

        try
        {
            await session.Connection.ReleaseTaskAsync(
                new ReleaseTaskRequest { TaskId = taskId, FencingToken = fencingToken, Reason = reason },
                session.Connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            _statistics.AddReleased();
            LogReleased(taskId, reason);
        }
        catch (RpcException ex)
        {
            LogReleaseFailed(taskId, RpcErrors.Describe(ex));
        }
    }

    private IReadOnlyCollection<TaskContext> HeldTasks() => [.. _running.Values.Select(r => r.Context)];

    private HeartbeatRequest NextBeat()
    {
        var running = _running.Keys.ToList();
        return new HeartbeatRequest
        {
            WorkerId = WorkerId,
            SessionEpoch = _sessionEpoch,
            // Draining is the registry's to set; unspecified keeps it.
            Status = _draining ? WorkerStatus.Unspecified
                : running.Count >= _options.MaxConcurrentTasks ? WorkerStatus.Busy : WorkerStatus.Online,
            RunningTaskIds = { running },
            Load = Math.Min(1.0, (double)running.Count / _options.MaxConcurrentTasks),
        };
    }

    private void OnCommand(WorkerCommand command)
    {
        switch (command.CommandCase)
        {
            case WorkerCommand.CommandOneofCase.Drain:
                Drain(string.IsNullOrEmpty(command.Drain.Reason) ? "drain command" : command.Drain.Reason);
                break;
            case WorkerCommand.CommandOneofCase.CancelTask:
                if (_running.TryGetValue(command.CancelTask.TaskId, out var running))
                {
                    LogTaskCancelled(command.CancelTask.TaskId, command.CancelTask.Reason);
                    running.Context.Cancel(TaskCancellationReason.TaskCancelled);
                }

                break;
            default:
                LogUnknownCommand(command.CommandCase.ToString());
                break;
        }
    }

    private void OnSuperseded()
    {
        _superseded = true;
        Finish("session taken over by another registration");
    }

    private void OnConnectionStateChanged(ConnectionState previous, ConnectionState current, string reason)
    {
        var (from, to) = (Name(previous), Name(current));
        if (current is ConnectionState.Retrying or ConnectionState.Offline)
        {
            LogConnectionWorse(from, to, reason);
        }
        else
        {
            LogConnectionBetter(from, to, reason);
        }

        try
        {
            ConnectionStateChanged?.Invoke(this, new ConnectionStateChangedEventArgs(previous, current, reason));
        }
#pragma warning disable CA1031 // An application's listener must not break the worker's state machine.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogStateListenerFailed(ex);
        }

        static string Name(ConnectionState state) => state switch
        {
            ConnectionState.Connected => "connected",
            ConnectionState.Retrying => "retrying",
            ConnectionState.Offline => "offline",
            _ => "syncing",
        };
    }

    private void Drain(string reason)
    {
        if (!_draining)
        {
            _draining = true;
            LogDraining(reason, _running.Count);
        }

        Finish("drained");
    }

    /// <summary>Ends the worker on its own: polling stops; running tasks finish (unless the host stops meanwhile).</summary>
    private void Finish(string because)
    {
        _finishedBecause ??= because;
        try
        {
            _stopPolling.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Already shut down.
        }
    }

    private Task WhenRunningTasksEndAsync() => Task.WhenAll(_running.Values.Select(r => r.Ended.Task));

    private async Task ShutDownAsync(Session session, CancellationTokenSource background, params Task[] loops)
    {
        // (1) Polling has stopped: the caller's loop is over. (2) Tell in-flight work.
        await _tellInFlight.CancelAsync().ConfigureAwait(false);

        // (3) Await it, up to the grace period.
        if (!_running.IsEmpty)
        {
            LogWaitingForTasks(_running.Count, _options.ShutdownGrace);
            try
            {
                await WhenRunningTasksEndAsync().WaitAsync(_options.ShutdownGrace).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Released below.
            }
        }

        // (4) Flush the outcome batch; what cannot be delivered now goes to the journal.
        await session.Delivery.StopAsync().ConfigureAwait(false);

        // (5) Release what is still held: leased again at once elsewhere, no attempt used. A handler that returns
        // later finds its outcome claimed and reports nothing.
        foreach (var running in _running.Values)
        {
            if (running.TryClaimOutcome())
            {
                await ReleaseAsync(session, running.Context, "worker shutdown: handler still running").ConfigureAwait(false);
            }
        }

        await session.Delivery.StopAsync().ConfigureAwait(false); // an outcome claimed just before (5)

        // (6) Stop heartbeating, extending leases and reconnecting.
        await background.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(loops).ConfigureAwait(false);

        // (7) Deregister (the channel is closed by the caller).
        if (WorkerId is not null && !session.Monitor.Journaling)
        {
            try
            {
                await session.Connection.Registry.DeregisterWorkerAsync(
                    new DeregisterWorkerRequest { WorkerId = WorkerId }, session.Connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
                LogDeregistered(WorkerId);
            }
            catch (RpcException ex)
            {
                LogDeregisterFailed(WorkerId, RpcErrors.Describe(ex));
            }
        }

        LogStopped(_statistics.ToString());
    }

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length];

    /// <summary>What a running worker talks through: the channel, its connection state, the outcome delivery, the heartbeat.</summary>
    private sealed record Session(WorkerConnection Connection, ConnectionMonitor Monitor, OutcomeDelivery Delivery, Heartbeats Heartbeats);

    /// <summary>A task between lease and outcome. Exactly one path reports its outcome (or releases it).</summary>
    private sealed class RunningTask(TaskContext context, DispatchStream? pushedOn)
    {
        private int _outcomeClaimed;
        private int _slotFreed;

        public TaskContext Context { get; } = context;

        /// <summary>The dispatch stream that pushed the task; null when leased with LeaseTasks.</summary>
        public DispatchStream? PushedOn { get; } = pushedOn;

        /// <summary>The handler still runs (its slot is not free yet).</summary>
        public bool HoldsSlot => Volatile.Read(ref _slotFreed) == 0;

        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool TryClaimOutcome() => Interlocked.Exchange(ref _outcomeClaimed, 1) == 0;

        public bool TryFreeSlot() => Interlocked.Exchange(ref _slotFreed, 1) == 0;
    }
}
