using Microsoft.Extensions.Logging;

namespace Lifeline.Worker;

/// <summary>Log messages of <see cref="LifelineWorker"/>, event ids 7100–7199.</summary>
public sealed partial class LifelineWorker
{
    [LoggerMessage(7100, LogLevel.Information, "Registered {WorkerName} as {WorkerId} (session {SessionEpoch}, heartbeat every {HeartbeatInterval}, task types {TaskTypes})")]
    private partial void LogRegistered(string workerName, string workerId, long sessionEpoch, TimeSpan heartbeatInterval, string taskTypes);

    [LoggerMessage(7101, LogLevel.Warning, "Registration failed ({Error}); retrying")]
    private partial void LogRegistrationRetry(string error);

    [LoggerMessage(7102, LogLevel.Warning, "Leasing failed ({Error}); retrying in {Backoff}")]
    private partial void LogLeaseFailed(string error, TimeSpan backoff);

    [LoggerMessage(7103, LogLevel.Information, "Task {TaskId} ({TaskType}) started with fencing token {FencingToken}, attempt {Attempt}")]
    private partial void LogStarted(string taskId, string taskType, long fencingToken, int attempt);

    [LoggerMessage(7107, LogLevel.Error, "The handler of task {TaskId} threw; failing the task as retryable")]
    private partial void LogHandlerFailed(Exception exception, string taskId);

    [LoggerMessage(7108, LogLevel.Warning, "The handler of task {TaskId} threw after it was told to stop")]
    private partial void LogHandlerFailedWhileCancelled(Exception exception, string taskId);

    [LoggerMessage(7110, LogLevel.Information, "Task {TaskId}: no outcome reported ({Reason})")]
    private partial void LogAbandoned(string taskId, TaskCancellationReason reason);

    [LoggerMessage(7111, LogLevel.Information, "Task {TaskId} released ({Reason})")]
    private partial void LogReleased(string taskId, string reason);

    [LoggerMessage(7112, LogLevel.Warning, "Task {TaskId} could not be released: {Error}")]
    private partial void LogReleaseFailed(string taskId, string error);

    [LoggerMessage(7117, LogLevel.Information, "Task {TaskId} cancelled: {Reason}")]
    private partial void LogTaskCancelled(string taskId, string reason);

    [LoggerMessage(7118, LogLevel.Warning, "Ignoring an unknown command {Command}")]
    private partial void LogUnknownCommand(string command);

    [LoggerMessage(7119, LogLevel.Information, "Draining ({Reason}): finishing {RunningCount} running task(s), leasing no more")]
    private partial void LogDraining(string reason, int runningCount);

    [LoggerMessage(7120, LogLevel.Information, "Waiting up to {Grace} for {RunningCount} running task(s)")]
    private partial void LogWaitingForTasks(int runningCount, TimeSpan grace);

    [LoggerMessage(7121, LogLevel.Information, "Deregistered {WorkerId}")]
    private partial void LogDeregistered(string workerId);

    [LoggerMessage(7122, LogLevel.Warning, "Deregistering {WorkerId} failed: {Error}")]
    private partial void LogDeregisterFailed(string workerId, string error);

    [LoggerMessage(7123, LogLevel.Information, "Stopped: {Statistics}")]
    private partial void LogStopped(string statistics);

    [LoggerMessage(7124, LogLevel.Warning, "Connection {Previous} → {Current}: {Reason}")]
    private partial void LogConnectionWorse(string previous, string current, string reason);

    [LoggerMessage(7125, LogLevel.Information, "Connection {Previous} → {Current}: {Reason}")]
    private partial void LogConnectionBetter(string previous, string current, string reason);

    [LoggerMessage(7126, LogLevel.Error, "A ConnectionStateChanged listener threw; ignored")]
    private partial void LogStateListenerFailed(Exception exception);

    [LoggerMessage(7127, LogLevel.Warning, "The journal {Path} had {Count} unreadable line(s) (torn by a crash while written); they were dropped")]
    private partial void LogJournalDamaged(string path, int count);

    [LoggerMessage(7128, LogLevel.Warning, "The journal {Path} holds {Count} entries of an earlier run; replaying them before leasing")]
    private partial void LogJournalFound(int count, string path);

    [LoggerMessage(7129, LogLevel.Warning, "Task {TaskId} not released: offline (its lease will expire)")]
    private partial void LogNotReleasedOffline(string taskId);

    [LoggerMessage(7130, LogLevel.Information, "Done; waiting to deliver {Count} journal entries before stopping")]
    private partial void LogWaitingForSync(int count);

    [LoggerMessage(7131, LogLevel.Debug, "Dispatch stream opened with {Slots} slot(s)")]
    private partial void LogDispatchOpened(int slots);

    [LoggerMessage(7132, LogLevel.Warning, "Dispatch stream ended: {Error}; opening another in {Backoff}")]
    private partial void LogDispatchEnded(string error, TimeSpan backoff);

    [LoggerMessage(7133, LogLevel.Warning, "The queue does not offer the dispatch stream ({Error}); leasing with LeaseTasks long polls")]
    private partial void LogDispatchUnavailable(string error);
}
