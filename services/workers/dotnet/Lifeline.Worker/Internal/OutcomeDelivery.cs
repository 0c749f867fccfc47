using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Microsoft.Extensions.Logging;
using Task = System.Threading.Tasks.Task;

namespace Lifeline.Worker.Internal;

/// <summary>What became of an outcome.</summary>
internal enum OutcomeFate
{
    /// <summary>The server accepted it.</summary>
    Accepted = 0,

    /// <summary>The server refused it for good (stale token, task no longer running, …); logged and counted.</summary>
    Refused = 1,

    /// <summary>It is in the journal (fsynced), to be replayed once the gateway answers again.</summary>
    Journaled = 2,

    /// <summary>It could be neither delivered nor journaled (the journal could not be written); logged as an error.</summary>
    Lost = 3,
}

/// <summary>An outcome on its way: a completion or failure (<see cref="JournalEntry"/> without a number) and the task's unsent progress.</summary>
internal sealed class PendingOutcome(JournalEntry entry, JournalProgress? unsentProgress)
{
    public JournalEntry Entry { get; } = entry;

    public JournalProgress? UnsentProgress { get; } = unsentProgress;

    public TaskCompletionSource<OutcomeFate> Fate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

/// <summary>
/// Delivers outcomes so that none is dropped on a transient failure: completions go out on the dispatch stream at
/// once, or, on unary calls, those that finish together as one <c>CompleteTasks</c> (<see cref="OutcomeBatcher{T}"/>), failures as <c>FailTask</c>; a transient failure is retried per
/// <see cref="RetryPolicy"/>; when retrying gives up, or while the worker is offline or syncing, the outcome goes to the
/// <see cref="OutcomeJournal"/>; <see cref="SyncAsync"/> replays the journal once the gateway answers again. A final
/// refusal is logged once, counted, and never retried.
/// </summary>
internal sealed partial class OutcomeDelivery
{
    private const int ReplayBatch = 100;
    private static readonly JournalProgress NoProgress = new(0, "");
    private readonly WorkerConnection _connection;
    private readonly ConnectionMonitor _monitor;
    private readonly OutcomeJournal _journal;
    private readonly RetryPolicy _policy;
    private readonly WorkerStatistics _statistics;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly OutcomeBatcher<PendingOutcome> _completions;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _failures = [];

    public OutcomeDelivery(WorkerConnection connection, ConnectionMonitor monitor, OutcomeJournal journal, RetryPolicy policy,
        WorkerStatistics statistics, LifelineWorkerOptions options, ILogger logger, TimeProvider? time = null)
    {
        _connection = connection;
        _monitor = monitor;
        _journal = journal;
        _policy = policy;
        _statistics = statistics;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        // On the dispatch stream each completion is its own message, and the queue groups what arrives together into
        // one commit: waiting out the window there only keeps the task's slot from being refilled (32 slots: 3,107 →
        // 5,481 tasks/s without the wait). Unary CompleteTasks calls keep the window.
        _completions = new OutcomeBatcher<PendingOutcome>(SendCompletionsAsync, options.OutcomeBatchWindow, options.MaxOutcomeBatch,
            atOnce: () => _connection.DispatchOpen);
    }

    /// <summary>Completes a task; the returned task ends when the completion is accepted, refused or journaled.</summary>
    public Task<OutcomeFate> CompleteAsync(string taskId, long fencingToken, string? result, JournalProgress? unsentProgress)
    {
        var outcome = new PendingOutcome(JournalEntry.Completion(taskId, fencingToken, result, _journal.Now), unsentProgress);
        _completions.Add(outcome);
        return outcome.Fate.Task;
    }

    /// <summary>Fails a task; the returned task ends when the failure is accepted, refused or journaled.</summary>
    public Task<OutcomeFate> FailAsync(string taskId, long fencingToken, JournalError error, TimeSpan? retryAfter, JournalProgress? unsentProgress)
    {
        var outcome = new PendingOutcome(JournalEntry.Failure(taskId, fencingToken, error, retryAfter, _journal.Now), unsentProgress);
        var sending = SendFailureAsync(outcome);
        lock (_gate)
        {
            _failures.Add(sending);
        }

        _ = sending.ContinueWith(
            done =>
            {
                lock (_gate)
                {
                    _failures.Remove(done);
                }
            },
            CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        return outcome.Fate.Task;
    }

    /// <summary>
    /// For shutdown: sends the waiting batch now, stops retrying (an outcome that fails from now on goes to the journal
    /// at once) and waits until every outcome handed over so far is accepted, refused or journaled.
    /// </summary>
    public async Task StopAsync()
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        await _completions.FlushAsync().ConfigureAwait(false);
        Task[] failures;
        lock (_gate)
        {
            failures = [.. _failures];
        }

        await Task.WhenAll(failures).ConfigureAwait(false);
    }

    /// <summary>
    /// While syncing: replays the journal in order (completions batched), pass after pass, until it is empty (then
    /// connected) or a call fails transiently (then offline again). A final refusal drops its entry with a log line.
    /// </summary>
    public async Task SyncAsync(CancellationToken cancellationToken)
    {
        while (_monitor.State == ConnectionState.Syncing && !cancellationToken.IsCancellationRequested)
        {
            var waiting = _journal.Count;
            if (waiting > 0)
            {
                LogReplaying(waiting);
            }

            if (!await ReplayPassAsync(cancellationToken).ConfigureAwait(false))
            {
                return;
            }

            if (_monitor.TryCompleteSync(() => _journal.IsEmpty, waiting > 0 ? $"journal replayed ({waiting} entries)" : "nothing to replay"))
            {
                return;
            }
        }
    }

    private async Task SendCompletionsAsync(IReadOnlyList<PendingOutcome> batch)
    {
        try
        {
            while (true)
            {
                if (_monitor.JournalIfOffline(() => Journal(batch)))
                {
                    return;
                }

                var request = new CompleteTasksRequest();
                foreach (var outcome in batch)
                {
                    request.Completions.Add(new TaskCompletion
                    {
                        TaskId = outcome.Entry.TaskId,
                        FencingToken = outcome.Entry.FencingToken,
                        Result = outcome.Entry.Result ?? "",
                    });
                }

                var call = await CallWithRetriesAsync("CompleteTasks", options => _connection.CompleteTasksAsync(request, options)).ConfigureAwait(false);
                switch (call.End)
                {
                    case CallEnd.Answered:
                        SettleCompletions(batch, call.Response!, replayed: false);
                        return;
                    case CallEnd.Refused when call.Refusal!.StatusCode == StatusCode.InvalidArgument && batch.Count > 1:
                        // One completion's result (e.g. not JSON) refuses the whole call: let each be judged on its own.
                        LogBatchSplit(batch.Count, call.Reason);
                        foreach (var outcome in batch)
                        {
                            await SendCompletionsAsync([outcome]).ConfigureAwait(false);
                        }

                        return;
                    case CallEnd.Refused:
                        foreach (var outcome in batch)
                        {
                            Refuse(outcome.Entry, call.Reason);
                            outcome.Fate.TrySetResult(OutcomeFate.Refused);
                        }

                        return;
                    default:
                        _monitor.GoOffline(call.Reason);
                        break; // journaled on the next turn, unless the connection is back already
                }
            }
        }
#pragma warning disable CA1031 // Delivery must settle every outcome; an unexpected error is logged and the outcomes marked lost.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogDeliveryCrashed(ex, batch.Count);
            foreach (var outcome in batch)
            {
                outcome.Fate.TrySetResult(OutcomeFate.Lost);
            }
        }
    }

    private async Task SendFailureAsync(PendingOutcome outcome)
    {
        try
        {
            while (true)
            {
                if (_monitor.JournalIfOffline(() => Journal([outcome])))
                {
                    return;
                }

                var request = FailRequest(outcome.Entry);
                var call = await CallWithRetriesAsync("FailTask", options => _connection.FailTaskAsync(request, options)).ConfigureAwait(false);
                switch (call.End)
                {
                    case CallEnd.Answered:
                        _statistics.AddFailed();
                        LogFailed(outcome.Entry.TaskId, outcome.Entry.Error!.Code, call.Response!.WillRetry ? "will retry" : call.Response.Task.Status.ToString());
                        outcome.Fate.TrySetResult(OutcomeFate.Accepted);
                        return;
                    case CallEnd.Refused:
                        Refuse(outcome.Entry, call.Reason);
                        outcome.Fate.TrySetResult(OutcomeFate.Refused);
                        return;
                    default:
                        _monitor.GoOffline(call.Reason);
                        break;
                }
            }
        }
#pragma warning disable CA1031 // See SendCompletionsAsync.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            LogDeliveryCrashed(ex, 1);
            outcome.Fate.TrySetResult(OutcomeFate.Lost);
        }
    }

    /// <summary>
    /// One call, retried on transient failures per the policy: at once, then with backoff, until the policy gives up,
    /// the worker goes offline, or it is stopping. Every answer and failure is reported to the connection monitor.
    /// </summary>
    private async Task<CallResult<TResponse>> CallWithRetriesAsync<TResponse>(string name, Func<CallOptions, Task<TResponse>> call)
        where TResponse : class
    {
        var failures = 0;
        var firstFailure = 0L;
        while (true)
        {
            var attemptStarted = _time.GetTimestamp();
            var (settled, ex) = await AttemptAsync(call).ConfigureAwait(false);
            if (settled is { } result)
            {
                return result;
            }

            var reason = $"{RpcErrors.Describe(ex!)} ({name})";
            if (failures++ == 0)
            {
                // A call that failed by its deadline failed from its start: in a black-holed network the window (and
                // with it the immediate retries) ends after OfflineAfter, not after three deadlines.
                firstFailure = attemptStarted;
            }

            var state = _monitor.ReportTransientFailure(reason, attemptStarted);
            var delay = _policy.NextDelay(failures, _time.GetElapsedTime(firstFailure), Random.Shared.NextDouble());
            if (delay is not { } wait || state == ConnectionState.Offline || _stopping.IsCancellationRequested)
            {
                return CallResult<TResponse>.GaveUp(reason);
            }

            _statistics.AddRetry();
            LogRetrying(failures, wait, reason);
            try
            {
                await Task.Delay(wait, _time, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return CallResult<TResponse>.GaveUp(reason);
            }
        }
    }

    /// <summary>
    /// One attempt: an answer or a final refusal settles the call (and counts as the queue answering); a transient
    /// failure is handed back for the caller to report and retry or give up.
    /// </summary>
    private async Task<(CallResult<TResponse>? Settled, RpcException? Transient)> AttemptAsync<TResponse>(Func<CallOptions, Task<TResponse>> call)
        where TResponse : class
    {
        try
        {
            var response = await call(_connection.CallOptions(CancellationToken.None)).ConfigureAwait(false);
            _monitor.ReportSuccess();
            return (CallResult<TResponse>.Answered(response), null);
        }
        catch (RpcException ex) when (RetryPolicy.Classify(ex) == FailureKind.Final)
        {
            _monitor.ReportSuccess("the queue answered");
            return (CallResult<TResponse>.Refused(ex), null);
        }
        catch (RpcException ex)
        {
            return (null, ex);
        }
    }

    /// <summary>Appends the outcomes (each after its unsent progress) in one fsynced write; settles them as journaled, or lost.</summary>
    private void Journal(IReadOnlyList<PendingOutcome> outcomes)
    {
        var entries = new List<JournalEntry>(outcomes.Count * 2);
        foreach (var outcome in outcomes)
        {
            if (outcome.UnsentProgress is { } progress)
            {
                entries.Add(JournalEntry.ProgressReport(outcome.Entry.TaskId, outcome.Entry.FencingToken, progress, outcome.Entry.At));
            }

            entries.Add(outcome.Entry);
        }

        try
        {
            _journal.Append(entries);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            LogJournalFailed(ex, _journal.FilePath, outcomes.Count);
            foreach (var outcome in outcomes)
            {
                outcome.Fate.TrySetResult(OutcomeFate.Lost);
            }

            return;
        }

        _statistics.AddJournaled(outcomes.Count);
        foreach (var outcome in outcomes)
        {
            LogJournaled(outcome.Entry.TaskId, Describe(outcome.Entry.Kind), outcome.Entry.FencingToken);
            outcome.Fate.TrySetResult(OutcomeFate.Journaled);
        }
    }

    private void SettleCompletions(IReadOnlyList<PendingOutcome> batch, CompleteTasksResponse response, bool replayed)
    {
        for (var i = 0; i < batch.Count; i++)
        {
            var entry = batch[i].Entry;
            var result = i < response.Results.Count ? response.Results[i] : null;
            if (result is { Accepted: true })
            {
                Accept(entry, replayed);
                batch[i].Fate.TrySetResult(OutcomeFate.Accepted);
            }
            else
            {
                Refuse(entry, result is null ? "no result for it in the answer" : DescribeRefusal(result));
                batch[i].Fate.TrySetResult(OutcomeFate.Refused);
            }
        }
    }

    private void Accept(JournalEntry entry, bool replayed)
    {
        if (entry.Kind == JournalEntryKind.Complete)
        {
            _statistics.AddCompleted();
        }
        else
        {
            _statistics.AddFailed();
        }

        if (replayed)
        {
            _statistics.AddReplayed();
            LogReplayed(entry.TaskId, Describe(entry.Kind));
        }
        else
        {
            LogCompleted(entry.TaskId);
        }
    }

    private void Refuse(JournalEntry entry, string reason)
    {
        _statistics.AddRefused();
        LogRefused(entry.TaskId, Describe(entry.Kind), entry.FencingToken, reason);
    }

    /// <summary>One pass over the journal as it is now. False when a call failed transiently (the monitor is offline again).</summary>
    private async Task<bool> ReplayPassAsync(CancellationToken cancellationToken)
    {
        var settled = new List<long>();
        var batch = new List<JournalEntry>();
        var inBatch = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var entry in _journal.Snapshot())
            {
                cancellationToken.ThrowIfCancellationRequested();
                if (inBatch.Contains(entry.TaskId) || batch.Count >= ReplayBatch)
                {
                    // A task's entries keep their order: its progress (or an earlier outcome) before what follows.
                    if (!await ReplayCompletionsAsync(batch, settled).ConfigureAwait(false))
                    {
                        return false;
                    }

                    batch.Clear();
                    inBatch.Clear();
                }

                if (entry.Kind == JournalEntryKind.Complete)
                {
                    batch.Add(entry);
                    inBatch.Add(entry.TaskId);
                }
                else if (!await ReplayOneAsync(entry, settled).ConfigureAwait(false))
                {
                    return false;
                }
            }

            return await ReplayCompletionsAsync(batch, settled).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                _journal.Remove(settled);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The file still holds them; replaying them again is harmless (same fencing tokens).
                LogJournalFailed(ex, _journal.FilePath, 0);
            }
        }
    }

    private async Task<bool> ReplayCompletionsAsync(List<JournalEntry> batch, List<long> settled)
    {
        if (batch.Count == 0)
        {
            return true;
        }

        var request = new CompleteTasksRequest();
        foreach (var entry in batch)
        {
            request.Completions.Add(new TaskCompletion { TaskId = entry.TaskId, FencingToken = entry.FencingToken, Result = entry.Result ?? "" });
        }

        var call = await CallOnceAsync("CompleteTasks", options => _connection.CompleteTasksAsync(request, options)).ConfigureAwait(false);
        switch (call.End)
        {
            case CallEnd.Answered:
                SettleCompletions([.. batch.Select(e => new PendingOutcome(e, null))], call.Response!, replayed: true);
                settled.AddRange(batch.Select(e => e.Seq));
                return true;
            case CallEnd.Refused when call.Refusal!.StatusCode == StatusCode.InvalidArgument && batch.Count > 1:
                LogBatchSplit(batch.Count, call.Reason);
                foreach (var entry in batch)
                {
                    if (!await ReplayCompletionsAsync([entry], settled).ConfigureAwait(false))
                    {
                        return false;
                    }
                }

                return true;
            case CallEnd.Refused:
                foreach (var entry in batch)
                {
                    Refuse(entry, call.Reason);
                }

                settled.AddRange(batch.Select(e => e.Seq));
                return true;
            default:
                return false;
        }
    }

    private async Task<bool> ReplayOneAsync(JournalEntry entry, List<long> settled)
    {
        if (entry.Kind == JournalEntryKind.Progress)
        {
            var progress = entry.Progress ?? NoProgress;
            var request = new ReportProgressRequest
            {
                TaskId = entry.TaskId,
                FencingToken = entry.FencingToken,
                Percent = Math.Clamp(progress.Percent, 0, 100),
                Message = progress.Message,
            };
            var call = await CallOnceAsync("ReportProgress", options => _connection.ReportProgressAsync(request, options)).ConfigureAwait(false);
            if (call.End == CallEnd.GaveUp)
            {
                return false;
            }

            if (call.End == CallEnd.Refused)
            {
                // Progress is no outcome: not counted as refused; the outcome that follows will say what happened.
                LogProgressDropped(entry.TaskId, call.Reason);
            }

            settled.Add(entry.Seq);
            return true;
        }

        var fail = FailRequest(entry);
        var failed = await CallOnceAsync("FailTask", options => _connection.FailTaskAsync(fail, options)).ConfigureAwait(false);
        switch (failed.End)
        {
            case CallEnd.Answered:
                Accept(entry, replayed: true);
                break;
            case CallEnd.Refused:
                Refuse(entry, failed.Reason);
                break;
            default:
                return false;
        }

        settled.Add(entry.Seq);
        return true;
    }

    /// <summary>One attempt (replay: a transient error sends the worker back offline rather than retrying).</summary>
    private async Task<CallResult<TResponse>> CallOnceAsync<TResponse>(string name, Func<CallOptions, Task<TResponse>> call)
        where TResponse : class
    {
        var started = _time.GetTimestamp();
        var (settled, ex) = await AttemptAsync(call).ConfigureAwait(false);
        if (settled is { } result)
        {
            return result;
        }

        var reason = $"{RpcErrors.Describe(ex!)} ({name}, replay)";
        _monitor.ReportTransientFailure(reason, started);
        return CallResult<TResponse>.GaveUp(reason);
    }

    private static FailTaskRequest FailRequest(JournalEntry entry)
    {
        var error = entry.Error!;
        var detail = new ErrorDetail { Code = error.Code, Message = error.Message, Retryable = error.Retryable };
        foreach (var (key, value) in error.Details)
        {
            detail.Details[key] = value;
        }

        var request = new FailTaskRequest { TaskId = entry.TaskId, FencingToken = entry.FencingToken, Error = detail };
        if (entry.RetryAfter is { } retryAfter)
        {
            request.RetryAfter = Duration.FromTimeSpan(retryAfter);
        }

        return request;
    }

    private static string DescribeRefusal(TaskCompletionResult result) =>
        string.IsNullOrEmpty(result.Reason)
            ? $"{(StatusCode)result.Code}: {result.Message}"
            : $"{(StatusCode)result.Code} ({result.Reason}): {result.Message}";

    private static string Describe(JournalEntryKind kind) => kind switch
    {
        JournalEntryKind.Complete => "completion",
        JournalEntryKind.Fail => "failure",
        _ => "progress",
    };

    [LoggerMessage(7140, LogLevel.Information, "Task {TaskId} completed")]
    private partial void LogCompleted(string taskId);

    [LoggerMessage(7141, LogLevel.Information, "Task {TaskId} failed with {ErrorCode} ({Outcome})")]
    private partial void LogFailed(string taskId, string errorCode, string outcome);

    [LoggerMessage(7142, LogLevel.Warning, "Task {TaskId}: the {Outcome} (fencing token {FencingToken}) was refused for good: {Error}")]
    private partial void LogRefused(string taskId, string outcome, long fencingToken, string error);

    [LoggerMessage(7143, LogLevel.Debug, "Outcome call failed ({Failures} so far): {Error}; trying again in {Delay}")]
    private partial void LogRetrying(int failures, TimeSpan delay, string error);

    [LoggerMessage(7144, LogLevel.Warning, "Task {TaskId}: the {Outcome} (fencing token {FencingToken}) is in the journal, to be replayed when the gateway answers again")]
    private partial void LogJournaled(string taskId, string outcome, long fencingToken);

    [LoggerMessage(7145, LogLevel.Critical, "Could not write the journal {Path}; {Count} outcome(s) are lost")]
    private partial void LogJournalFailed(Exception exception, string path, int count);

    [LoggerMessage(7146, LogLevel.Information, "Replaying {Count} journal entries")]
    private partial void LogReplaying(int count);

    [LoggerMessage(7147, LogLevel.Information, "Task {TaskId}: the journaled {Outcome} was accepted")]
    private partial void LogReplayed(string taskId, string outcome);

    [LoggerMessage(7148, LogLevel.Information, "Task {TaskId}: journaled progress dropped: {Error}")]
    private partial void LogProgressDropped(string taskId, string error);

    [LoggerMessage(7149, LogLevel.Warning, "A batch of {Count} completions was refused as a whole ({Error}); sending each on its own")]
    private partial void LogBatchSplit(int count, string error);

    [LoggerMessage(7150, LogLevel.Error, "Delivering {Count} outcome(s) failed unexpectedly; they are lost")]
    private partial void LogDeliveryCrashed(Exception exception, int count);
}
