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
    private const string Checkpoint = "lifeline.checkpoint.v1.CheckpointService/";
    private const string Recovery = "lifeline.recovery.v1.RecoveryService/";
    private const string SystemState = "lifeline.recovery.v1.SystemStateService/";
    private const string Consistency = "lifeline.recovery.v1.ConsistencyService/";
    private const string RecoveryPlans = "lifeline.recovery.v1.RecoveryPlanService/";
    private const string DisasterRecovery = "lifeline.recovery.v1.DisasterRecoveryService/";
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
        [Queue + "RecoverTask"] = Role.Operator,
        [Queue + "RemoveDependency"] = Role.Operator,
        [Queue + "FindDependencyCycles"] = Role.Operator,
        [Queue + "ListActiveTenants"] = Role.Internal,

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
        [Registry + "SendWorkerCommand"] = Role.Operator,
        [Registry + "ReconcileWorkers"] = Role.Operator,
        [Registry + "ListActiveTenants"] = Role.Internal,

        // checkpoint: workers save and read their workflows' state and artifacts; removing history and
        // rolling back are operator decisions.
        [Checkpoint + "GetCheckpoint"] = Role.Reader,
        [Checkpoint + "GetLatestCheckpoint"] = Role.Reader,
        [Checkpoint + "ListCheckpoints"] = Role.Reader,
        [Checkpoint + "GetWorkflow"] = Role.Reader,
        [Checkpoint + "DiffCheckpoints"] = Role.Reader,
        [Checkpoint + "GetArtifact"] = Role.Reader,
        [Checkpoint + "CreateCheckpoint"] = Role.Worker,
        [Checkpoint + "PutArtifact"] = Role.Worker,
        [Checkpoint + "InvalidateCheckpoint"] = Role.Worker,
        [Checkpoint + "Rollback"] = Role.Operator,
        [Checkpoint + "DeleteCheckpoint"] = Role.Operator,
        [Checkpoint + "CleanupCheckpoints"] = Role.Operator,

        // recovery: what it did and the system's state are readable; acting is for operators.
        [Recovery + "ListRecoveryActions"] = Role.Reader,
        [Recovery + "GetRecoveryStats"] = Role.Reader,
        [Recovery + "GetLeadership"] = Role.Reader,
        [Recovery + "RunRecoveryScan"] = Role.Operator,
        [SystemState + "GetSystemState"] = Role.Reader,
        [SystemState + "ListSystemStateHistory"] = Role.Reader,
        [Consistency + "ListChecks"] = Role.Reader,
        [Consistency + "RunAllChecks"] = Role.Operator,
        [Consistency + "RunCheck"] = Role.Operator,
        [Consistency + "FixIssues"] = Role.Operator,

        // recovery plans: reading them is for everyone; creating, approving, executing and resolving are operator decisions.
        [RecoveryPlans + "GetRecoveryPlan"] = Role.Reader,
        [RecoveryPlans + "ListRecoveryPlans"] = Role.Reader,
        [RecoveryPlans + "CreateRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ExecuteRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ApproveRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ResolveManualAction"] = Role.Operator,

        // disaster recovery: plans, runs and the webhook outbox are readable; everything that changes them is for operators.
        [DisasterRecovery + "GetDisasterRecoveryPlan"] = Role.Reader,
        [DisasterRecovery + "ListDisasterRecoveryPlans"] = Role.Reader,
        [DisasterRecovery + "GetDisasterRecoveryRun"] = Role.Reader,
        [DisasterRecovery + "ListNotifications"] = Role.Reader,
        [DisasterRecovery + "CreateDisasterRecoveryPlan"] = Role.Operator,
        [DisasterRecovery + "RunDisasterRecoveryPlan"] = Role.Operator,
        [DisasterRecovery + "CancelDisasterRecoveryRun"] = Role.Operator,

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
