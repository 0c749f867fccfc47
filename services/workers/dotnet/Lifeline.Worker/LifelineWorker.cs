using System.Collections.Concurrent;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.Worker.Internal;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker;

/// <summary>
/// A Lifeline worker shaped as a <see cref="BackgroundService"/>: it registers with the registry, heartbeats,
/// leases tasks of its handlers' types with a long poll, runs them and reports their outcomes with the lease's
/// fencing token.
/// </summary>
/// <remarks>
/// <para>
/// While it runs: a heartbeat every <c>heartbeat_interval</c> (from registration) reports the running tasks and
/// receives commands — <c>drain</c> stops leasing, lets running tasks finish, then ends the worker;
/// <c>cancel_task</c> cancels that task's handler token (<see cref="TaskCancellationReason.TaskCancelled"/>). Leases
/// of running tasks are extended by progress reports and, for handlers that stay silent, by a lease keeper every
/// third of <see cref="LifelineWorkerOptions.LeaseDuration"/>.
/// </para>
/// <para>
/// Shutdown is ordered: (1) stop polling; (2) tell in-flight work through its cancellation token
/// (<see cref="TaskCancellationReason.WorkerStopping"/>); (3) await it up to
/// <see cref="LifelineWorkerOptions.ShutdownGrace"/>; (4) release every task still held, so it is leased again at
/// once without using an attempt; (5) stop heartbeating; (6) deregister.
/// </para>
/// </remarks>
public sealed partial class LifelineWorker : BackgroundService
{
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(10);

    private readonly LifelineWorkerOptions _options;
    private readonly Dictionary<string, ITaskHandler> _handlers;
    private readonly ILogger<LifelineWorker> _logger;
    private readonly IHostApplicationLifetime? _lifetime;
    private readonly ConcurrentDictionary<string, RunningTask> _running = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _tellInFlight = new();
    private readonly CancellationTokenSource _stopPolling = new();
    private readonly SemaphoreSlim _freeSlots;
    private readonly WorkerStatistics _statistics = new();
    private TimeSpan _heartbeatInterval = TimeSpan.FromSeconds(5);
    private long _sessionEpoch;
    private int _taken;
    private volatile string? _finishedBecause;
    private volatile bool _draining;

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

    /// <summary>The id the registry gave this worker; null until registered.</summary>
    public string? WorkerId { get; private set; }

    /// <summary>The task types this worker runs (its capabilities).</summary>
    public IReadOnlyCollection<string> TaskTypes => _handlers.Keys;

    /// <summary>What the worker has done so far.</summary>
    public WorkerStatistics Statistics => _statistics;

    /// <summary>Why the worker ended on its own (drained, enough tasks done, session taken over); null otherwise.</summary>
    public string? FinishedBecause => _finishedBecause;

    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var connection = new WorkerConnection(_options);
        await RegisterAsync(connection, stoppingToken).ConfigureAwait(false);

        using var background = new CancellationTokenSource();
        var heartbeats = HeartbeatLoopAsync(connection, background.Token);
        var leaseKeeper = LeaseKeeperLoopAsync(connection, background.Token);
        try
        {
            using (var polling = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, _stopPolling.Token))
            {
                await PollAsync(connection, polling.Token).ConfigureAwait(false);
            }

            if (!stoppingToken.IsCancellationRequested)
            {
                // Finished on its own (drained, enough tasks): running tasks end normally, unless the host stops first.
                await WhenRunningTasksEndAsync().WaitAsync(stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The host is stopping: the ordinary way to end.
        }
        finally
        {
            await ShutDownAsync(connection, background, heartbeats, leaseKeeper).ConfigureAwait(false);
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

    private async Task RegisterAsync(WorkerConnection connection, CancellationToken cancellationToken)
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
            try
            {
                var response = await connection.Registry.RegisterWorkerAsync(request, connection.CallOptions(cancellationToken)).ConfigureAwait(false);
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
                LogRegistrationRetry(RpcErrors.Describe(ex));
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private async Task PollAsync(WorkerConnection connection, CancellationToken cancellationToken)
    {
        var backoff = TimeSpan.FromMilliseconds(500);
        while (!cancellationToken.IsCancellationRequested)
        {
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
                    },
                    connection.CallOptions(cancellationToken, _options.PollWait)).ConfigureAwait(false);
                backoff = TimeSpan.FromMilliseconds(500);
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
                LogLeaseFailed(RpcErrors.Describe(ex), backoff);
                await Task.Delay(backoff, cancellationToken).ConfigureAwait(false);
                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                continue;
            }

            if (response.Tasks.Count < capacity)
            {
                _freeSlots.Release(capacity - response.Tasks.Count);
            }

            foreach (var task in response.Tasks)
            {
                Interlocked.Increment(ref _taken);
                var running = new RunningTask(new TaskContext(task, WorkerId!, connection, _options, _tellInFlight.Token));
                _running[task.Id] = running;
                _ = Task.Run(() => RunTaskAsync(connection, running), CancellationToken.None);
            }
        }
    }

    private async Task RunTaskAsync(WorkerConnection connection, RunningTask running)
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
            try
            {
                await connection.Queue.StartTaskAsync(
                    new StartTaskRequest { TaskId = context.TaskId, FencingToken = context.FencingToken },
                    connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            }
            catch (RpcException ex)
            {
                if (running.TryClaimOutcome())
                {
                    LogNotStarted(context.TaskId, RpcErrors.Describe(ex));
                    _statistics.AddAbandoned();
                }

                return;
            }

            LogStarted(context.TaskId, context.TaskType, context.FencingToken, context.Attempt);
            string? result;
            try
            {
                result = await _handlers[context.TaskType].HandleAsync(context, context.CancellationToken).ConfigureAwait(false);
            }
            catch (TaskFailedException ex)
            {
                var error = new ErrorDetail { Code = ex.Code, Message = Truncate(ex.Message, 4096), Retryable = ex.Retryable };
                error.Details.Add(ex.Details);
                await ReportFailureAsync(connection, running, error).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (context.CancellationToken.IsCancellationRequested)
            {
                // The handler stopped because it was told to (or failed while being told to): no failure to report.
                await GiveUpAsync(connection, running, ex is OperationCanceledException ? null : ex).ConfigureAwait(false);
                return;
            }
#pragma warning disable CA1031 // A handler's unexpected exception fails its task; it must not take the worker down.
            catch (Exception ex)
#pragma warning restore CA1031
            {
                LogHandlerFailed(ex, context.TaskId);
                var error = new ErrorDetail
                {
                    Code = "UNHANDLED_EXCEPTION",
                    Message = Truncate($"{ex.GetType().Name}: {ex.Message}", 4096),
                    Retryable = true,
                };
                await ReportFailureAsync(connection, running, error).ConfigureAwait(false);
                return;
            }

            await ReportCompletionAsync(connection, running, result).ConfigureAwait(false);
        }
        finally
        {
            _running.TryRemove(context.TaskId, out _);
            try
            {
                _freeSlots.Release();
            }
            catch (ObjectDisposedException)
            {
                // A handler that outlived the worker (its task was released at shutdown).
            }

            running.Ended.TrySetResult();
            context.Dispose();
        }
    }

    private async Task ReportCompletionAsync(WorkerConnection connection, RunningTask running, string? result)
    {
        if (!running.TryClaimOutcome())
        {
            return; // released at shutdown meanwhile
        }

        var context = running.Context;
        if (context.CancellationReason is TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost)
        {
            Abandon(context);
            return;
        }

        try
        {
            await connection.Queue.CompleteTaskAsync(
                new CompleteTaskRequest { TaskId = context.TaskId, FencingToken = context.FencingToken, Result = result ?? "" },
                connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            _statistics.AddCompleted();
            LogCompleted(context.TaskId);
        }
        catch (RpcException ex)
        {
            // A refused outcome (stale token, cancelled task) changes nothing on the server, by design.
            LogOutcomeRefused(context.TaskId, "completion", RpcErrors.Describe(ex));
            _statistics.AddAbandoned();
        }
    }

    private async Task ReportFailureAsync(WorkerConnection connection, RunningTask running, ErrorDetail error)
    {
        if (!running.TryClaimOutcome())
        {
            return;
        }

        var context = running.Context;
        if (context.CancellationReason is TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost)
        {
            Abandon(context);
            return;
        }

        try
        {
            var response = await connection.Queue.FailTaskAsync(
                new FailTaskRequest { TaskId = context.TaskId, FencingToken = context.FencingToken, Error = error },
                connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            _statistics.AddFailed();
            LogFailed(context.TaskId, error.Code, response.WillRetry ? "will retry" : response.Task.Status.ToString());
        }
        catch (RpcException ex)
        {
            LogOutcomeRefused(context.TaskId, "failure", RpcErrors.Describe(ex));
            _statistics.AddAbandoned();
        }
    }

    /// <summary>The handler stopped because its token was cancelled: release if the worker is stopping, else report nothing.</summary>
    private async Task GiveUpAsync(WorkerConnection connection, RunningTask running, Exception? exception)
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
            await ReleaseAsync(connection, running.Context, "worker stopping").ConfigureAwait(false);
        }
        else
        {
            Abandon(running.Context);
        }
    }

    private void Abandon(TaskContext context)
    {
        LogAbandoned(context.TaskId, context.CancellationReason);
        _statistics.AddAbandoned();
    }

    private async Task ReleaseAsync(WorkerConnection connection, TaskContext context, string reason)
    {
        try
        {
            await connection.Queue.ReleaseTaskAsync(
                new ReleaseTaskRequest { TaskId = context.TaskId, FencingToken = context.FencingToken, Reason = reason },
                connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            _statistics.AddReleased();
            LogReleased(context.TaskId, reason);
        }
        catch (RpcException ex)
        {
            LogReleaseFailed(context.TaskId, RpcErrors.Describe(ex));
        }
    }

    private async Task HeartbeatLoopAsync(WorkerConnection connection, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            var running = _running.Keys.ToList();
            try
            {
                var response = await connection.Registry.HeartbeatAsync(
                    new HeartbeatRequest
                    {
                        WorkerId = WorkerId,
                        SessionEpoch = _sessionEpoch,
                        // Draining is the registry's to set; unspecified keeps it.
                        Status = _draining ? WorkerStatus.Unspecified
                            : running.Count >= _options.MaxConcurrentTasks ? WorkerStatus.Busy : WorkerStatus.Online,
                        RunningTaskIds = { running },
                        Load = Math.Min(1.0, (double)running.Count / _options.MaxConcurrentTasks),
                    },
                    connection.CallOptions(cancellationToken)).ConfigureAwait(false);
                foreach (var command in response.Commands)
                {
                    OnCommand(command);
                }
            }
            catch (Exception ex) when (ex is RpcException or OperationCanceledException && cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (RpcException ex) when (RpcErrors.Reason(ex) == "STALE_SESSION")
            {
                // The name was registered again by another process, which owns it now.
                LogSessionSuperseded(_options.Name);
                Finish("session taken over by another registration");
                return;
            }
            catch (RpcException ex)
            {
                LogHeartbeatFailed(RpcErrors.Describe(ex));
            }

            try
            {
                await Task.Delay(_heartbeatInterval, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task LeaseKeeperLoopAsync(WorkerConnection connection, CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromSeconds(1));
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
            {
                foreach (var running in _running.Values)
                {
                    var context = running.Context;
                    if (context.CancellationReason is TaskCancellationReason.TaskCancelled or TaskCancellationReason.LeaseLost
                        || context.SinceLeaseExtended < _options.LeaseDuration / 3)
                    {
                        continue;
                    }

                    try
                    {
                        await connection.Queue.ExtendLeaseAsync(
                            new ExtendLeaseRequest
                            {
                                TaskId = context.TaskId,
                                FencingToken = context.FencingToken,
                                LeaseDuration = Duration.FromTimeSpan(_options.LeaseDuration),
                            },
                            connection.CallOptions(cancellationToken)).ConfigureAwait(false);
                        context.MarkLeaseExtended();
                    }
                    catch (RpcException ex) when (!cancellationToken.IsCancellationRequested && RpcErrors.LeaseIsGone(ex))
                    {
                        LogLeaseLost(context.TaskId, RpcErrors.Describe(ex));
                        context.Cancel(TaskCancellationReason.LeaseLost);
                    }
                    catch (RpcException ex) when (!cancellationToken.IsCancellationRequested)
                    {
                        LogLeaseNotExtended(context.TaskId, RpcErrors.Describe(ex));
                    }
                }
            }
        }
        catch (Exception ex) when (ex is RpcException or OperationCanceledException && cancellationToken.IsCancellationRequested)
        {
            // Shutting down.
        }
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

    private async Task ShutDownAsync(WorkerConnection connection, CancellationTokenSource background, Task heartbeats, Task leaseKeeper)
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

        // (4) Release what is still held: leased again at once elsewhere, no attempt used. A handler that returns
        // later finds its outcome claimed and reports nothing.
        foreach (var running in _running.Values)
        {
            if (running.TryClaimOutcome())
            {
                await ReleaseAsync(connection, running.Context, "worker shutdown: handler still running").ConfigureAwait(false);
            }
        }

        // (5) Stop heartbeating and extending leases.
        await background.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(heartbeats, leaseKeeper).ConfigureAwait(false);

        // (6) Deregister.
        if (WorkerId is not null)
        {
            try
            {
                await connection.Registry.DeregisterWorkerAsync(
                    new DeregisterWorkerRequest { WorkerId = WorkerId }, connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
                LogDeregistered(WorkerId);
            }
            catch (RpcException ex)
            {
                LogDeregisterFailed(WorkerId, RpcErrors.Describe(ex));
            }
        }

        LogStopped(_statistics.Completed, _statistics.Failed, _statistics.Released, _statistics.Abandoned);
    }

    private static string Truncate(string text, int length) => text.Length <= length ? text : text[..length];

    /// <summary>A task between lease and outcome. Exactly one path reports its outcome (or releases it).</summary>
    private sealed class RunningTask(TaskContext context)
    {
        private int _outcomeClaimed;

        public TaskContext Context { get; } = context;

        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool TryClaimOutcome() => Interlocked.Exchange(ref _outcomeClaimed, 1) == 0;
    }
}
