using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Lifeline.Queue.Data;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.Extensions.Options;

namespace Lifeline.Queue.Leasing;

/// <summary>A validated `open` of a dispatch stream.</summary>
public sealed record DispatchOpening(string WorkerId, string[] TaskTypes, int Slots, TimeSpan LeaseDuration);

/// <summary>A validated message after `open`: a holder's call, or a new slot count.</summary>
public sealed record DispatchMessage(long RequestId, HolderCommand? Command, int? Capacity);

/// <summary>What a dispatch stream sends to its worker.</summary>
public abstract record DispatchOutput;

/// <summary>A task leased to the stream's worker and started.</summary>
public sealed record PushedTask(TaskRecord Task) : DispatchOutput;

/// <summary>The answer to a holder's call: the task as it is now, or the refusal the unary call would have thrown.</summary>
public sealed record HolderAck(long RequestId, Guid TaskId, TaskRecord? Task, bool WillRetry, LifelineException? Refusal) : DispatchOutput;

/// <summary>Runs dispatch streams (QueueService.Dispatch): one <see cref="DispatchSession"/> per stream.</summary>
public sealed partial class TaskDispatcher(TaskLeaser leaser, LeaseHolderOperations holders, CompleteAndRefill refills, WorkerGate gate,
    ReadySignal readySignal, IOptions<QueueOptions> options, ILogger<TaskDispatcher> logger)
{
    /// <summary>
    /// Admits the worker as a lease would (FAILED_PRECONDITION when it may not lease), then serves the stream until the
    /// worker half-closes it (returns), the call is cancelled (throws <see cref="OperationCanceledException"/>), or a
    /// message is invalid or the store fails (throws; the answers already due are written first).
    /// </summary>
    public async Task RunAsync(string tenant, DispatchOpening opening, IAsyncEnumerable<DispatchMessage> messages,
        Func<DispatchOutput, CancellationToken, Task> write, CancellationToken callToken)
    {
        await gate.AdmitAsync(tenant, new LeaseRequest(opening.WorkerId, opening.TaskTypes, opening.Slots, opening.LeaseDuration, TimeSpan.Zero, true));
        LogOpened(logger, opening.WorkerId, opening.Slots);
        var session = new DispatchSession(this, tenant, opening);
        try
        {
            await session.RunAsync(messages, write, callToken);
        }
        finally
        {
            LogClosed(logger, opening.WorkerId, session.Pushed, session.Acked);
        }
    }

    [LoggerMessage(EventId = 1801, Level = LogLevel.Debug, Message = "Dispatch stream of worker {WorkerId} opened with {Slots} slots")]
    private static partial void LogOpened(ILogger logger, string workerId, int slots);

    [LoggerMessage(EventId = 1802, Level = LogLevel.Debug, Message = "Dispatch stream of worker {WorkerId} closed after {Pushed} tasks pushed and {Acked} requests answered")]
    private static partial void LogClosed(ILogger logger, string workerId, long pushed, long acked);

    [LoggerMessage(EventId = 1803, Level = LogLevel.Warning, Message = "Dispatch stream of worker {WorkerId}: could not give back task {TaskId} leased beyond a lowered capacity; it returns when its lease expires")]
    private static partial void LogGiveBackFailed(ILogger logger, string workerId, Guid taskId, Exception exception);

    /// <summary>
    /// One dispatch stream. Three loops: the reader applies the worker's messages (holder calls run concurrently, but
    /// those naming the same task in order), the pump leases while slots are free and pushes each task, and the writer
    /// is the only one that writes to the stream (what the others send goes through one channel). Slots: a task pushed
    /// here holds one until a complete, fail or release naming it arrives, accepted or not; `capacity` sets the count.
    /// A completion that frees a slot refills it itself, in its own transaction (<see cref="CompleteAndRefill"/>): the
    /// pump fills the slots nothing else fills — the first ones, those a fail or release freed, a raised capacity.
    /// When the stream ends or breaks, leasing stops at once and pushed tasks are left as they are (they run out their
    /// leases); a task leased but not yet written when the stream broke stays leased likewise and is recovered after its
    /// lease like any other.
    /// </summary>
    private sealed class DispatchSession(TaskDispatcher owner, string tenant, DispatchOpening opening)
    {
        /// <summary>Holder calls of one stream applied at once (they meet other streams' calls in the store's group commits).</summary>
        private const int MaxConcurrentCalls = 64;

        /// <summary>Leases of one stream in flight at once (they meet other streams' leases in the store's group commits).</summary>
        private const int MaxConcurrentLeases = 4;

        /// <summary>Messages waiting for the writer: more than the pushes of a full set of slots plus the answers of the calls in flight.</summary>
        private const int OutputBuffer = 500 + 2 * MaxConcurrentCalls;

        /// <summary>How long the answers already due may take to reach a worker when its stream ends with an error.</summary>
        private static readonly TimeSpan FlushLimit = TimeSpan.FromSeconds(10);

        private readonly Channel<DispatchOutput> _output = Channel.CreateBounded<DispatchOutput>(
            new BoundedChannelOptions(OutputBuffer) { SingleReader = true });
        private readonly Lock _lock = new();
        private readonly Dictionary<Guid, bool> _held = []; // the tasks pushed and not yet ended: whether each had dependents
        private readonly Dictionary<Guid, Task> _lastCallOfTask = [];
        private readonly SemaphoreSlim _calls = new(MaxConcurrentCalls, MaxConcurrentCalls);
        private int _slots = opening.Slots;
        private int _reserved; // slots promised to leases in flight
        private int _leasing; // leases in flight
        private bool _idle; // the last lease found nothing: wait for work before the next
        private ReadySignal.Watch? _idleWatch; // the ready signal as the first empty lease since the last wait saw it
        private TaskCompletionSource _slotsChanged = NewSignal();
        private Exception? _failure;
        private long _pushed;
        private long _acked;
        private CancellationTokenSource? _stopReading; // set when the stream starts: cancelling it ends the stream
        private Admission? _admitted; // the worker gate's last answer for a refill, and when

        private sealed record Admission(string[] Types, long At);

        /// <summary>
        /// How long a refill reuses the worker gate's last admission instead of asking again (a Redis read per completion
        /// otherwise): a worker turned draining or offline may get a task pushed within this window, as a lease already
        /// in flight when its state changes would.
        /// </summary>
        private static readonly TimeSpan AdmissionReuse = TimeSpan.FromMilliseconds(100);

        public long Pushed => Interlocked.Read(ref _pushed);
        public long Acked => Interlocked.Read(ref _acked);

        public async Task RunAsync(IAsyncEnumerable<DispatchMessage> messages, Func<DispatchOutput, CancellationToken, Task> write, CancellationToken callToken)
        {
            // aborted: the stream is gone (the call ended or a write failed). stopLeasing / stopReading: a graceful stop of one loop.
            using var aborted = CancellationTokenSource.CreateLinkedTokenSource(callToken);
            using var stopLeasing = CancellationTokenSource.CreateLinkedTokenSource(aborted.Token);
            using var stopReading = CancellationTokenSource.CreateLinkedTokenSource(aborted.Token);
            _stopReading = stopReading;
            var writer = WriteLoopAsync(write, aborted);
            var pump = PumpAsync(stopLeasing.Token, aborted.Token);
            try
            {
                await ReadLoopAsync(messages, stopReading.Token);
            }
            catch (Exception ex)
            {
                Fail(ex);
            }
            await AwaitCallsAsync();
            await stopLeasing.CancelAsync();
            Signal();
            await pump;
            _output.Writer.TryComplete();
            if (_failure is not null && !aborted.IsCancellationRequested)
            {
                // The answers already due first, then the error; but not for ever to a worker that does not read.
                aborted.CancelAfter(FlushLimit);
            }
            await writer;
            if (_failure is not null)
            {
                ExceptionDispatchInfo.Throw(_failure);
            }
            callToken.ThrowIfCancellationRequested();
        }

        private async Task ReadLoopAsync(IAsyncEnumerable<DispatchMessage> messages, CancellationToken ct)
        {
            await foreach (var message in messages.WithCancellation(ct))
            {
                if (message.Capacity is { } slots)
                {
                    lock (_lock)
                    {
                        _slots = slots;
                    }
                    Signal();
                    continue;
                }
                var command = message.Command!;
                await _calls.WaitAsync(ct);
                var refill = false;
                var hadDependents = false;
                if (command.EndsAttempt)
                {
                    bool freed;
                    lock (_lock)
                    {
                        freed = _held.Remove(command.TaskId, out hadDependents);
                        // A completion refills the slot it frees in its own transaction: the slot is promised to it.
                        refill = freed && command is CompleteCommand && _slots - _held.Count - _reserved > 0;
                        if (refill)
                        {
                            _reserved++;
                            _leasing++;
                        }
                    }
                    if (freed && !refill)
                    {
                        Signal();
                    }
                }
                Task call;
                lock (_lock)
                {
                    // Calls naming the same task run in the order they came; others at once.
                    var previous = _lastCallOfTask.GetValueOrDefault(command.TaskId) ?? Task.CompletedTask;
                    call = CallAsync(previous, message.RequestId, command, refill, hadDependents, ct);
                    _lastCallOfTask[command.TaskId] = call;
                }
                // Registered once the call is in the map (a call that finished already is removed at once).
                _ = call.ContinueWith(done => Forget(command.TaskId, done), CancellationToken.None,
                    TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }
        }

        /// <summary>
        /// Applies one holder's call and writes its answer. <paramref name="refill"/>: the call is a completion that
        /// freed a slot promised to it (in <see cref="_reserved"/>); it leases for that slot in its own transaction and
        /// pushes what it leased after the answer.
        /// </summary>
        private async Task CallAsync(Task previous, long requestId, HolderCommand command, bool refill, bool hadDependents, CancellationToken ct)
        {
            var found = true;
            ReadySignal.Watch? watch = null;
            try
            {
                await previous;
                if (refill)
                {
                    var request = await AdmitRefillAsync();
                    watch = owner.ReadySignal.Observe(tenant);
                    var outcome = await owner.Refills.RunAsync(tenant, (CompleteCommand)command, request, hadDependents, ct);
                    found = request is null || outcome.Refill.Count > 0;
                    await AnswerAsync(new HolderAck(requestId, command.TaskId, outcome.Completed, false, outcome.Refusal), ct);
                    await PushAsync(outcome.Refill, ct);
                    return;
                }
                HolderAck ack;
                try
                {
                    var (task, willRetry) = await owner.Holders.ApplyAsync(tenant, command, ct);
                    ack = new HolderAck(requestId, command.TaskId, task, willRetry, null);
                }
                catch (LifelineException refusal) when (refusal is NotFoundException or PreconditionFailedException)
                {
                    // What the unary call would have refused is an answer, not an error of the stream.
                    ack = new HolderAck(requestId, command.TaskId, null, false, refusal);
                }
                await AnswerAsync(ack, ct);
            }
            catch (Exception ex)
            {
                // The store failed (or the stream ended): the stream ends with it (reading stops, the answers already due
                // are written, then the error); the worker sends unanswered calls again. Reading on would leave this
                // call unanswered on an open stream.
                await FailAsync(ex);
            }
            finally
            {
                _calls.Release();
                if (refill)
                {
                    lock (_lock)
                    {
                        _reserved--;
                        _leasing--;
                        NothingFound(found, watch);
                    }
                    Signal();
                }
            }
        }

        private async Task AnswerAsync(HolderAck ack, CancellationToken ct)
        {
            await _output.Writer.WriteAsync(ack, ct);
            Interlocked.Increment(ref _acked);
        }

        /// <summary>
        /// The refill's lease request, admitted by the worker gate as every lease is; null when the worker may no longer
        /// lease (the slot goes back to the pump, whose lease meets the same refusal and ends the stream with it).
        /// </summary>
        private async Task<LeaseRequest?> AdmitRefillAsync()
        {
            var request = new LeaseRequest(opening.WorkerId, opening.TaskTypes, 1, opening.LeaseDuration, TimeSpan.Zero, Start: true);
            var admitted = Volatile.Read(ref _admitted);
            if (admitted is { } recent && Stopwatch.GetElapsedTime(recent.At) < AdmissionReuse)
            {
                return request with { TaskTypes = recent.Types };
            }
            try
            {
                var types = await owner.Gate.AdmitAsync(tenant, request);
                Volatile.Write(ref _admitted, new Admission(types, Stopwatch.GetTimestamp()));
                return request with { TaskTypes = types };
            }
            catch (PreconditionFailedException)
            {
                Volatile.Write(ref _admitted, null);
                return null;
            }
        }

        /// <summary>Drops a task's last call once it is done (unless a later call of the task took its place).</summary>
        private void Forget(Guid taskId, Task done)
        {
            lock (_lock)
            {
                if (_lastCallOfTask.TryGetValue(taskId, out var last) && ReferenceEquals(last, done))
                {
                    _lastCallOfTask.Remove(taskId);
                }
            }
        }

        private async Task AwaitCallsAsync()
        {
            while (true)
            {
                Task[] running;
                lock (_lock)
                {
                    running = _lastCallOfTask.Values.Where(t => !t.IsCompleted).ToArray();
                }
                if (running.Length == 0)
                {
                    return;
                }
                await Task.WhenAll(running); // CallAsync never throws
            }
        }

        /// <summary>
        /// Leases while slots are free: up to <see cref="MaxConcurrentLeases"/> leases in flight, each for the slots free
        /// and not yet promised to another (a stream of many slots whose tasks end one by one would otherwise wait for one
        /// lease statement per task, one after the other). When a lease finds nothing, the pump waits for the queue's ready
        /// signal (with its poll interval) or a slot change before it asks again.
        /// </summary>
        private async Task PumpAsync(CancellationToken stop, CancellationToken aborted)
        {
            var leases = new List<Task>();
            try
            {
                while (!stop.IsCancellationRequested)
                {
                    int want;
                    bool idle;
                    ReadySignal.Watch? idleWatch;
                    Task changed;
                    lock (_lock)
                    {
                        changed = _slotsChanged.Task;
                        idle = _idle;
                        idleWatch = _idleWatch;
                        want = idle || _leasing >= MaxConcurrentLeases ? 0 : _slots - _held.Count - _reserved;
                        if (want > 0)
                        {
                            _reserved += want;
                            _leasing++;
                        }
                    }
                    if (want > 0)
                    {
                        leases.RemoveAll(t => t.IsCompleted);
                        leases.Add(LeaseAndPushAsync(want, aborted));
                        continue;
                    }
                    if (idle && Volatile.Read(ref _leasing) == 0)
                    {
                        // Nothing to lease: wait for work (the queue's ready signal as the empty lease saw it, so a signal that
                        // came after its snapshot is not slept through; with its poll interval) or for a slot change.
                        await Task.WhenAny(ReadySignal.WaitAsync(idleWatch ?? owner.ReadySignal.Observe(tenant), owner.PollInterval, stop), changed);
                        lock (_lock)
                        {
                            _idle = false;
                            _idleWatch = null;
                        }
                        continue;
                    }
                    await changed.WaitAsync(stop).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                }
            }
            catch (Exception ex)
            {
                await FailAsync(ex);
            }
            finally
            {
                // The statements in flight run to their end even when the worker stops the stream meanwhile (only a broken
                // stream cancels them): what they leased is pushed, or given back.
                await Task.WhenAll(leases);
            }
        }

        /// <summary>Under the lock, after a lease (or refill) ended: one that found nothing makes the pump wait, on the watch it took first.</summary>
        private void NothingFound(bool found, ReadySignal.Watch? watch)
        {
            if (!found)
            {
                _idle = true;
                _idleWatch ??= watch;
            }
        }

        /// <summary>One lease of up to <paramref name="want"/> tasks (promised to it in <see cref="_reserved"/>), then their push.</summary>
        private async Task LeaseAndPushAsync(int want, CancellationToken aborted)
        {
            var found = true;
            var watch = owner.ReadySignal.Observe(tenant);
            try
            {
                var leased = await owner.Leaser.LeaseAsync(tenant,
                    new LeaseRequest(opening.WorkerId, opening.TaskTypes, want, opening.LeaseDuration, TimeSpan.Zero, Start: true), aborted);
                found = leased.Count > 0;
                await PushAsync(leased, aborted);
            }
            catch (OperationCanceledException) when (aborted.IsCancellationRequested)
            {
                // The stream is gone; what was leased and not written stays leased until its lease expires.
            }
            catch (Exception ex)
            {
                // The worker may no longer lease (its registry state changed) or the store failed: the stream ends with it.
                await FailAsync(ex);
            }
            finally
            {
                lock (_lock)
                {
                    _reserved -= want;
                    _leasing--;
                    NothingFound(found, watch);
                }
                Signal();
            }
        }

        private async Task PushAsync(IReadOnlyList<TaskRecord> leased, CancellationToken aborted)
        {
            List<TaskRecord>? beyondCapacity = null;
            foreach (var task in leased)
            {
                bool push;
                lock (_lock)
                {
                    // The capacity may have been lowered while the lease ran.
                    push = _held.Count < _slots && _held.TryAdd(task.Id, task.HasDependents);
                }
                if (push)
                {
                    await _output.Writer.WriteAsync(new PushedTask(task), aborted);
                    Interlocked.Increment(ref _pushed);
                }
                else
                {
                    (beyondCapacity ??= []).Add(task);
                }
            }
            foreach (var task in beyondCapacity ?? [])
            {
                try
                {
                    await owner.Holders.ReleaseAsync(tenant, task.Id, task.FencingToken, "not pushed: the dispatch stream's capacity was lowered",
                        TimeSpan.Zero, aborted);
                }
                catch (LifelineException ex)
                {
                    LogGiveBackFailed(owner.Logger, opening.WorkerId, task.Id, ex);
                }
            }
        }

        private async Task WriteLoopAsync(Func<DispatchOutput, CancellationToken, Task> write, CancellationTokenSource aborted)
        {
            try
            {
                await foreach (var output in _output.Reader.ReadAllAsync(aborted.Token))
                {
                    await write(output, aborted.Token);
                }
            }
            catch (Exception ex)
            {
                // The stream broke (or did not drain in time after an error): everything stops.
                Fail(ex);
                await aborted.CancelAsync();
            }
        }

        /// <summary>Records why the stream ends and stops reading the worker's messages, which ends the stream.</summary>
        private async Task FailAsync(Exception ex)
        {
            Fail(ex);
            await _stopReading!.CancelAsync();
        }

        private void Fail(Exception ex)
        {
            lock (_lock)
            {
                // The first failure says why the stream ended; the cancellations it causes in the other loops do not.
                _failure ??= ex;
            }
        }

        private void Signal()
        {
            TaskCompletionSource changed;
            lock (_lock)
            {
                changed = _slotsChanged;
                _slotsChanged = NewSignal();
            }
            changed.TrySetResult();
        }

        private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    private TaskLeaser Leaser => leaser;
    private LeaseHolderOperations Holders => holders;
    private CompleteAndRefill Refills => refills;
    private WorkerGate Gate => gate;
    private ReadySignal ReadySignal => readySignal;
    private TimeSpan PollInterval => options.Value.LeasePollInterval;
    private ILogger Logger => logger;
}
