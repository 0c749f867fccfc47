using Lifeline.Benchmarks.Measurement;

namespace Lifeline.Benchmarks.Scenarios.Recovery;

/// <summary>
/// Workers that hold started tasks stop beating together (T0, a simulated SIGKILL); a live rescuer long-polls
/// LeaseTasks and records when each task comes back to it.
/// </summary>
/// <param name="SinceDeath">Re-lease (LeaseTasks answer at the rescuer) − T0.</param>
/// <param name="SinceLastBeat">Re-lease − the dead holder's last heartbeat sent (its TTL started then).</param>
/// <param name="ServiceTimeToRecovery">The recovery service's own time_to_recovery of each action (recovered_at − detected_at).</param>
/// <param name="ByTrigger">Successful recovery actions on the scenario's tasks by trigger (WORKER_LOST = the lost-event fast path; the others = a scan).</param>
/// <param name="ReleasedOnce">Tasks the rescuer leased exactly once, each with a larger fencing token than the dead worker's.</param>
/// <param name="ZombieCompletionsRefused">The dead workers' CompleteTasks with their old tokens, sent after the re-lease: all must be refused.</param>
internal sealed record WorkerDeathResult(
    string Name,
    int DeadWorkers,
    int Tasks,
    double HeartbeatIntervalSeconds,
    double TtlSeconds,
    double ScanIntervalSeconds,
    double LeaderLeaseSeconds,
    double HolderLeaseSeconds,
    DelayDistribution? SinceDeath,
    DelayDistribution? SinceLastBeat,
    DelayDistribution? ServiceTimeToRecovery,
    int ReleasedOnce,
    int Duplicates,
    int Missing,
    int Unexpected,
    int NotNewerToken,
    int ByLostWorker,
    int ByScan,
    IReadOnlyDictionary<string, int> ByTrigger,
    int TasksWithoutAction,
    int TasksWithSeveralActions,
    int ZombieCompletionsRefused,
    int RescuerCompletionsAccepted,
    string StoredCheck,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check);

/// <summary>One RunRecoveryScan call.</summary>
/// <param name="ServiceSeconds">The duration the service reports (the scan itself).</param>
/// <param name="CallSeconds">Client-side, request to answer.</param>
internal sealed record ScanRun(long Examined, long SkippedAlive, int Actions, double ServiceSeconds, double CallSeconds);

/// <summary>
/// RunRecoveryScan over <paramref name="Tasks"/> started tasks leased to <paramref name="Holders"/> live, beating workers:
/// nothing is recoverable, so a scan reads every in-flight task and the worker list and acts on none.
/// </summary>
/// <param name="TasksPerSecond">Examined ÷ the median scan duration.</param>
/// <param name="RecoveryCpu">CPU over all the scans (service = the recovery process).</param>
/// <param name="QueueCores">The queue process's CPU over the same time (ListTasks pages).</param>
internal sealed record RecoveryScanResult(
    int Tasks,
    int Holders,
    double EnqueueSeconds,
    double LeaseSeconds,
    IReadOnlyList<ScanRun> Runs,
    double MinSeconds,
    double MedianSeconds,
    double TasksPerSecond,
    CpuUse? RecoveryCpu,
    double? QueueCores,
    int Errors,
    IReadOnlyList<string> ErrorDetails,
    bool Verified,
    string Check);
