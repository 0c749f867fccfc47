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

    [LoggerMessage(7104, LogLevel.Warning, "Task {TaskId} could not be started: {Error}")]
    private partial void LogNotStarted(string taskId, string error);

    [LoggerMessage(7105, LogLevel.Information, "Task {TaskId} completed")]
    private partial void LogCompleted(string taskId);

    [LoggerMessage(7106, LogLevel.Information, "Task {TaskId} failed with {ErrorCode} ({Outcome})")]
    private partial void LogFailed(string taskId, string errorCode, string outcome);

    [LoggerMessage(7107, LogLevel.Error, "The handler of task {TaskId} threw; failing the task as retryable")]
    private partial void LogHandlerFailed(Exception exception, string taskId);

    [LoggerMessage(7108, LogLevel.Warning, "The handler of task {TaskId} threw after it was told to stop")]
    private partial void LogHandlerFailedWhileCancelled(Exception exception, string taskId);

    [LoggerMessage(7109, LogLevel.Warning, "Task {TaskId}: the {Outcome} was refused: {Error}")]
    private partial void LogOutcomeRefused(string taskId, string outcome, string error);

    [LoggerMessage(7110, LogLevel.Information, "Task {TaskId}: no outcome reported ({Reason})")]
    private partial void LogAbandoned(string taskId, TaskCancellationReason reason);

    [LoggerMessage(7111, LogLevel.Information, "Task {TaskId} released ({Reason})")]
    private partial void LogReleased(string taskId, string reason);

    [LoggerMessage(7112, LogLevel.Warning, "Task {TaskId} could not be released: {Error}")]
    private partial void LogReleaseFailed(string taskId, string error);

    [LoggerMessage(7113, LogLevel.Warning, "Heartbeat failed: {Error}")]
    private partial void LogHeartbeatFailed(string error);

    [LoggerMessage(7114, LogLevel.Error, "Heartbeat refused: {WorkerName} was registered again by another process, which owns it now")]
    private partial void LogSessionSuperseded(string workerName);

    [LoggerMessage(7115, LogLevel.Warning, "Task {TaskId}: lease lost ({Error}); telling its handler")]
    private partial void LogLeaseLost(string taskId, string error);

    [LoggerMessage(7116, LogLevel.Warning, "Task {TaskId}: lease not extended: {Error}")]
    private partial void LogLeaseNotExtended(string taskId, string error);

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

    [LoggerMessage(7123, LogLevel.Information, "Stopped: {Completed} completed, {Failed} failed, {Released} released, {Abandoned} abandoned")]
    private partial void LogStopped(long completed, long failed, long released, long abandoned);
}
