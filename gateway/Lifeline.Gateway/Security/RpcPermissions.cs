namespace Lifeline.Gateway.Security;

/// <summary>
/// THE table of who may call what: the least role each RPC needs, by its full name. gRPC calls are looked up by
/// their path, REST calls by the RPC their (method, path) transcodes to, so there is no second list.
/// An RPC missing here needs <see cref="Role.Operator"/> (deny by default); a test keeps every contract RPC listed.
/// </summary>
internal static class RpcPermissions
{
    private const string Queue = "lifeline.queue.v1.QueueService/";
    private const string Registry = "lifeline.registry.v1.RegistryService/";
    private const string Backup = "lifeline.backup.v1.BackupService/";

    public static IReadOnlyDictionary<string, Role> Table { get; } = new Dictionary<string, Role>(StringComparer.Ordinal)
    {
        // queue
        [Queue + "GetTask"] = Role.Reader,
        [Queue + "ListTasks"] = Role.Reader,
        [Queue + "GetTaskHistory"] = Role.Reader,
        [Queue + "ListDeadLetters"] = Role.Reader,
        [Queue + "GetQueueStats"] = Role.Reader,
        [Queue + "WatchTasks"] = Role.Reader,
        [Queue + "EnqueueTask"] = Role.Worker,
        [Queue + "EnqueueTasks"] = Role.Worker,
        [Queue + "LeaseTasks"] = Role.Worker,
        [Queue + "StartTask"] = Role.Worker,
        [Queue + "ReportProgress"] = Role.Worker,
        [Queue + "ExtendLease"] = Role.Worker,
        [Queue + "CompleteTask"] = Role.Worker,
        [Queue + "CompleteTasks"] = Role.Worker,
        [Queue + "FailTask"] = Role.Worker,
        [Queue + "ReleaseTask"] = Role.Worker,
        [Queue + "CancelTask"] = Role.Operator,
        [Queue + "AddDependency"] = Role.Operator,
        [Queue + "RedriveDeadLetters"] = Role.Operator,

        // registry
        [Registry + "GetWorker"] = Role.Reader,
        [Registry + "ListWorkers"] = Role.Reader,
        [Registry + "WatchWorkers"] = Role.Reader,
        [Registry + "GetWorkerStats"] = Role.Reader,
        [Registry + "ListWorkerStats"] = Role.Reader,
        [Registry + "GetCircuitBreaker"] = Role.Reader,
        [Registry + "ListCircuitBreakers"] = Role.Reader,
        [Registry + "RegisterWorker"] = Role.Worker,
        [Registry + "DeregisterWorker"] = Role.Worker,
        [Registry + "Heartbeat"] = Role.Worker,
        [Registry + "HeartbeatStream"] = Role.Worker,
        // Outcomes drive breakers and statistics: the queue reports them service to service; through the
        // front door only operators may (a worker must not be able to vouch for itself).
        [Registry + "RecordTaskOutcome"] = Role.Operator,
        [Registry + "RecordTaskOutcomes"] = Role.Operator,
        [Registry + "DrainWorker"] = Role.Operator,
        [Registry + "ResetCircuitBreaker"] = Role.Operator,
        [Registry + "RecalculateWorkerStats"] = Role.Operator,

        // backup: the catalog may be read; everything that takes, proves, restores or removes a backup is for operators
        [Backup + "ListBackups"] = Role.Reader,
        [Backup + "GetBackup"] = Role.Reader,
        [Backup + "ListSchedules"] = Role.Reader,
        [Backup + "CreateBackup"] = Role.Operator,
        [Backup + "VerifyBackup"] = Role.Operator,
        [Backup + "RestoreBackup"] = Role.Operator,
        [Backup + "DeleteBackup"] = Role.Operator,
        [Backup + "ApplyRetention"] = Role.Operator,
        [Backup + "SetSchedule"] = Role.Operator,
        [Backup + "DeleteSchedule"] = Role.Operator,
    };

    /// <summary>The least role that may call <paramref name="rpcFullName"/> (<c>package.Service/Method</c>).</summary>
    public static Role Required(string rpcFullName) =>
        Table.TryGetValue(rpcFullName, out var role) ? role : Role.Operator;
}
