using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Worker.Internal;

namespace Lifeline.Worker;

/// <summary>Why a handler's cancellation token was cancelled.</summary>
public enum TaskCancellationReason
{
    /// <summary>Not cancelled.</summary>
    None = 0,

    /// <summary>The worker is shutting down; a handler that gives up has its task released (no attempt used).</summary>
    WorkerStopping = 1,

    /// <summary>The task was cancelled (a <c>cancel_task</c> command); its outcome would be refused.</summary>
    TaskCancelled = 2,

    /// <summary>The lease is no longer this worker's (expired, superseded, or the task ended elsewhere).</summary>
    LeaseLost = 3,
}

/// <summary>One leased task as a handler sees it: its identity and payload, progress reporting and cancellation.</summary>
public sealed class TaskContext : IDisposable
{
    private readonly WorkerConnection _connection;
    private readonly ConnectionMonitor _monitor;
    private readonly LifelineWorkerOptions _options;
    private readonly CancellationTokenSource _cancellation;
    private int _reason;
    private long _lastExtendedTicks = Environment.TickCount64;
    private JournalProgress? _unsentProgress;

    internal TaskContext(Queue.V1.Task task, string workerId, WorkerConnection connection, ConnectionMonitor monitor, LifelineWorkerOptions options,
        CancellationToken workerStopping)
    {
        Task = task;
        WorkerId = workerId;
        _connection = connection;
        _monitor = monitor;
        _options = options;
        _cancellation = CancellationTokenSource.CreateLinkedTokenSource(workerStopping);
        _cancellation.Token.Register(() => Interlocked.CompareExchange(ref _reason, (int)TaskCancellationReason.WorkerStopping, 0));
    }

    /// <summary>The task's id (UUID).</summary>
    public string TaskId => Task.Id;

    /// <summary>The task's type.</summary>
    public string TaskType => Task.Type;

    /// <summary>The task's input: a JSON object as text (<c>{}</c> when none was given).</summary>
    public string Payload => string.IsNullOrEmpty(Task.Payload) ? "{}" : Task.Payload;

    /// <summary>The fencing token of this worker's lease; every call about the task carries it.</summary>
    public long FencingToken => Task.FencingToken;

    /// <summary>Which attempt this is: 1 for the first run, 2 for the first retry, …</summary>
    public int Attempt => Task.RetryCount + 1;

    /// <summary>Retries the task is allowed after its first attempt.</summary>
    public int MaxRetries => Task.MaxRetries;

    /// <summary>The id of the worker running the task.</summary>
    public string WorkerId { get; }

    /// <summary>The workflow the task belongs to (its saved state lives under this id in the checkpoint service), if any.</summary>
    public string? WorkflowId => string.IsNullOrEmpty(Task.WorkflowId) ? null : Task.WorkflowId;

    /// <summary>
    /// The checkpoint this attempt should resume from: set when recovery requeued the task after its previous
    /// worker died, pointing at the workflow's newest valid checkpoint. Null: start from the beginning.
    /// </summary>
    public string? ResumeCheckpointId => string.IsNullOrEmpty(Task.ResumeCheckpointId) ? null : Task.ResumeCheckpointId;

    /// <summary>
    /// The <c>context</c> (a JSON object as text) of <see cref="ResumeCheckpointId"/>, verified by the checkpoint
    /// service; null when there is nothing to resume from.
    /// </summary>
    public async System.Threading.Tasks.Task<string?> LoadResumeContextAsync(CancellationToken cancellationToken = default)
    {
        if (ResumeCheckpointId is not { } id)
        {
            return null;
        }
        var response = await _connection.Checkpoints.GetCheckpointAsync(
            new Checkpoint.V1.GetCheckpointRequest { CheckpointId = id }, _connection.CallOptions(cancellationToken)).ConfigureAwait(false);
        return response.Checkpoint.State.Context;
    }

    /// <summary>
    /// Saves the task's progress as a checkpoint of its workflow (<see cref="WorkflowId"/>, or <c>task-&lt;id&gt;</c>
    /// when it has none): <paramref name="contextJson"/> (a JSON object) as the state's context, <paramref name="phase"/>
    /// as its current phase. Returns the checkpoint's id. A later attempt gets it as <see cref="ResumeCheckpointId"/>.
    /// </summary>
    public async System.Threading.Tasks.Task<string> SaveCheckpointAsync(string name, string contextJson, int phase = 0, CancellationToken cancellationToken = default)
    {
        var request = new Checkpoint.V1.CreateCheckpointRequest
        {
            WorkflowId = WorkflowId ?? $"task-{TaskId}",
            Name = name,
            Type = Checkpoint.V1.CheckpointType.Auto,
            Phase = phase,
            Agent = WorkerId,
            State = new Checkpoint.V1.CheckpointState
            {
                Workflow = new Checkpoint.V1.WorkflowState { CurrentPhase = phase, Status = "running" },
                Context = contextJson,
            },
        };
        var response = await _connection.Checkpoints.CreateCheckpointAsync(request, _connection.CallOptions(cancellationToken)).ConfigureAwait(false);
        return response.Metadata.Id;
    }

    /// <summary>
    /// <see cref="SaveCheckpointAsync"/> for a handler whose checkpoints only shorten a retry: a transient failure
    /// (the gateway unreachable, say) skips this checkpoint and returns null instead of failing the handler; a refusal
    /// still throws. The work goes on offline, and the outcome is kept by the worker's journal.
    /// </summary>
    public async System.Threading.Tasks.Task<string?> TrySaveCheckpointAsync(string name, string contextJson, int phase = 0, CancellationToken cancellationToken = default)
    {
        try
        {
            return await SaveCheckpointAsync(name, contextJson, phase, cancellationToken).ConfigureAwait(false);
        }
        catch (RpcException ex) when (RpcErrors.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>Cancelled when the handler should stop; <see cref="CancellationReason"/> says why.</summary>
    public CancellationToken CancellationToken => _cancellation.Token;

    /// <summary>Why <see cref="CancellationToken"/> was cancelled, or <see cref="TaskCancellationReason.None"/>.</summary>
    public TaskCancellationReason CancellationReason => (TaskCancellationReason)Volatile.Read(ref _reason);

    internal Queue.V1.Task Task { get; }

    internal TimeSpan SinceLeaseExtended => TimeSpan.FromMilliseconds(Environment.TickCount64 - Interlocked.Read(ref _lastExtendedTicks));

    /// <summary>The payload deserialized with System.Text.Json (web defaults: camelCase, case-insensitive).</summary>
    /// <typeparam name="T">The payload's shape.</typeparam>
    public T? GetPayload<T>(JsonSerializerOptions? options = null) =>
        JsonSerializer.Deserialize<T>(Payload, options ?? JsonSerializerOptions.Web);

    /// <summary>
    /// Records progress and extends the lease by <see cref="LifelineWorkerOptions.LeaseDuration"/>. When the server
    /// says the lease is gone (task cancelled, lease superseded), cancels <see cref="CancellationToken"/> and throws
    /// <see cref="OperationCanceledException"/>. A transient failure does not throw: the worker keeps extending the lease,
    /// and the latest progress goes to the journal with the outcome if the worker is offline by then. While the worker is
    /// offline or syncing (<see cref="LifelineWorker.ConnectionState"/>) no call is made: the progress is only kept.
    /// </summary>
    /// <param name="percent">Progress, 0 to 100.</param>
    /// <param name="message">What is happening (at most 1,024 characters).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <exception cref="OperationCanceledException">The lease is no longer this worker's, or the call was cancelled.</exception>
    public async System.Threading.Tasks.Task ReportProgressAsync(int percent, string? message = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(percent);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percent, 100);
        var progress = new JournalProgress(percent, message ?? "");
        Volatile.Write(ref _unsentProgress, progress);
        if (_monitor.Journaling)
        {
            return;
        }

        var started = _monitor.Timestamp;
        try
        {
            await _connection.ReportProgressAsync(
                new ReportProgressRequest
                {
                    TaskId = TaskId,
                    FencingToken = FencingToken,
                    Percent = percent,
                    Message = message ?? "",
                    LeaseDuration = Duration.FromTimeSpan(_options.LeaseDuration),
                },
                _connection.CallOptions(cancellationToken)).ConfigureAwait(false);
            Interlocked.CompareExchange(ref _unsentProgress, null, progress);
            MarkLeaseExtended();
            _monitor.ReportSuccess();
        }
        catch (RpcException ex) when (RpcErrors.LeaseIsGone(ex))
        {
            _monitor.ReportSuccess("the queue answered");
            Cancel(TaskCancellationReason.LeaseLost);
            throw new OperationCanceledException($"The lease of task {TaskId} is gone: {ex.Status.Detail}", ex, CancellationToken);
        }
        catch (RpcException ex) when (RpcErrors.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
        {
            // The lease keeper extends the lease again shortly; the progress stays unsent (journaled with the outcome if need be).
            _monitor.ReportTransientFailure($"{RpcErrors.Describe(ex)} (ReportProgress)", started);
        }
    }

    /// <summary>The latest progress the server has not acknowledged, if any.</summary>
    internal JournalProgress? UnsentProgress => Volatile.Read(ref _unsentProgress);

    /// <inheritdoc />
    public void Dispose() => _cancellation.Dispose();

    internal void MarkLeaseExtended() => Interlocked.Exchange(ref _lastExtendedTicks, Environment.TickCount64);

    /// <summary>Cancels the handler's token with <paramref name="reason"/>, unless it was cancelled before.</summary>
    internal void Cancel(TaskCancellationReason reason)
    {
        Interlocked.CompareExchange(ref _reason, (int)reason, 0);
        try
        {
            _cancellation.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The handler has already finished.
        }
    }
}
