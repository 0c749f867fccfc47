namespace Lifeline.ServiceDefaults.Security;

/// <summary>
/// THE table of who may call what: the least role each RPC needs, by its full name. gRPC calls are looked up by
/// their path, REST calls by the RPC their (method, path) transcodes to, so there is no second list.
/// The gateway checks it before forwarding a call and every service again on the identity the call carries.
/// An RPC missing here needs <see cref="Role.Service"/> (deny by default: no credential reaches it through the
/// gateway); a test fails for every contract RPC without a rule.
/// </summary>
public static class RpcPermissions
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
        [Queue + "Dispatch"] = Role.Worker,
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
        [Queue + "ListActiveTenants"] = Role.Service,

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
        [Registry + "ListActiveTenants"] = Role.Service,

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

        // recovery: what it did for the caller's tenant is readable (a platform admin sees every tenant's);
        // the suite's state, scans, leadership and consistency checks span tenants.
        [Recovery + "ListRecoveryActions"] = Role.Reader,
        [Recovery + "GetRecoveryStats"] = Role.Reader,
        [Recovery + "GetLeadership"] = Role.PlatformAdmin,
        [Recovery + "RunRecoveryScan"] = Role.PlatformAdmin,
        [SystemState + "GetSystemState"] = Role.PlatformAdmin,
        [SystemState + "ListSystemStateHistory"] = Role.PlatformAdmin,
        [Consistency + "ListChecks"] = Role.PlatformAdmin,
        [Consistency + "RunAllChecks"] = Role.PlatformAdmin,
        [Consistency + "RunCheck"] = Role.PlatformAdmin,
        [Consistency + "FixIssues"] = Role.PlatformAdmin,

        // recovery plans belong to a tenant: its readers read them; creating, approving, executing and resolving
        // are its operators' decisions.
        [RecoveryPlans + "GetRecoveryPlan"] = Role.Reader,
        [RecoveryPlans + "ListRecoveryPlans"] = Role.Reader,
        [RecoveryPlans + "CreateRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ExecuteRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ApproveRecoveryPlan"] = Role.Operator,
        [RecoveryPlans + "ResolveManualAction"] = Role.Operator,

        // disaster recovery acts on the whole suite: platform admins only, its webhook outbox included.
        [DisasterRecovery + "GetDisasterRecoveryPlan"] = Role.PlatformAdmin,
        [DisasterRecovery + "ListDisasterRecoveryPlans"] = Role.PlatformAdmin,
        [DisasterRecovery + "GetDisasterRecoveryRun"] = Role.PlatformAdmin,
        [DisasterRecovery + "ListNotifications"] = Role.PlatformAdmin,
        [DisasterRecovery + "CreateDisasterRecoveryPlan"] = Role.PlatformAdmin,
        [DisasterRecovery + "RunDisasterRecoveryPlan"] = Role.PlatformAdmin,
        [DisasterRecovery + "CancelDisasterRecoveryRun"] = Role.PlatformAdmin,

        // backups hold every tenant's data: platform admins only, the catalog included.
        [Backup + "ListBackups"] = Role.PlatformAdmin,
        [Backup + "GetBackup"] = Role.PlatformAdmin,
        [Backup + "ListSchedules"] = Role.PlatformAdmin,
        [Backup + "CreateBackup"] = Role.PlatformAdmin,
        [Backup + "VerifyBackup"] = Role.PlatformAdmin,
        [Backup + "RestoreBackup"] = Role.PlatformAdmin,
        [Backup + "DeleteBackup"] = Role.PlatformAdmin,
        [Backup + "ApplyRetention"] = Role.PlatformAdmin,
        [Backup + "SetSchedule"] = Role.PlatformAdmin,
        [Backup + "DeleteSchedule"] = Role.PlatformAdmin,
    };

    /// <summary>The least role that may call <paramref name="rpcFullName"/> (<c>package.Service/Method</c>).</summary>
    public static Role Required(string rpcFullName) =>
        Table.TryGetValue(rpcFullName, out var role) ? role : Role.Service;
}
