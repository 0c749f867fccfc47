using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.SystemState;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.Options;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Consistency;

/// <summary>
/// A live worker reports running a task the queue does not have leased to it (ended, pending, unknown, or
/// leased to another worker): fixed by telling the worker to drop it. Also reported, not fixed: a running
/// task whose live worker, heartbeating since the task started, leaves it out of the tasks it reports.
/// </summary>
public sealed class WorkerTaskMismatchCheck(SuiteClients clients, CoveredTenants tenants, IOptions<RecoveryOptions> options) : IConsistencyCheck
{
    /// <summary>How long after a task started its worker's heartbeats must include it before its absence is reported.</summary>
    private static readonly TimeSpan ReportGrace = TimeSpan.FromSeconds(2);

    public CheckDefinition Definition { get; } = new()
    {
        Name = "worker_task_mismatch",
        Description = "A live worker reports running a task the queue does not have leased to it (ended, pending, unknown or leased to "
            + "another worker); also reported: a running task its live worker no longer reports.",
        Severity = Severity.Medium,
        Fixable = true,
        FixDescription = "Sends the worker a cancel_task command (RegistryService.SendWorkerCommand) so it drops the task; the queue refuses "
            + "its outcome anyway. Tasks a worker leaves out are only reported.",
    };

    public async Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct)
    {
        var issues = new List<FoundIssue>();
        foreach (var tenant in await tenants.RefreshAsync(ct))
        {
            var workers = await clients.AllWorkersAsync(tenant, ct);
            var leased = new Dictionary<string, Queue.V1.Task>(StringComparer.OrdinalIgnoreCase);
            foreach (var status in new[] { TaskStatus.Assigned, TaskStatus.Running })
            {
                foreach (var task in await clients.TasksAsync(tenant, status, options.Value.ScanPageSize, ct))
                {
                    leased[task.Id] = task;
                }
            }
            foreach (var listed in workers.Where(w => w.Gone() is null && w.RunningTaskIds.Count > 0))
            {
                // The listing is PostgreSQL's coalesced copy; confirm with the live (Redis) view before reporting.
                var candidates = listed.RunningTaskIds.Where(id => !HeldBy(leased, id, listed.Id)).ToList();
                if (candidates.Count == 0 || await clients.WorkerOrNullAsync(tenant, listed.Id, ct) is not { } worker || worker.Gone() is not null)
                {
                    continue;
                }
                foreach (var taskId in candidates.Where(worker.RunningTaskIds.Contains))
                {
                    var task = leased.GetValueOrDefault(taskId) ?? await clients.TaskOrNullAsync(tenant, taskId, ct);
                    var state = Describe(task);
                    issues.Add(new FoundIssue(tenant, $"worker:{worker.Id}",
                        $"Worker {worker.Id} ({worker.Name}) reports running task {taskId}, which {state}.", true,
                        new Dictionary<string, string>
                        {
                            ["worker_id"] = worker.Id,
                            ["task_id"] = taskId,
                            ["task_status"] = task?.Status.Name() ?? "unknown",
                            ["task_worker_id"] = task?.AssignedWorkerId ?? "",
                        }));
                }
            }
            var byId = workers.ToDictionary(w => w.Id, StringComparer.OrdinalIgnoreCase);
            foreach (var task in leased.Values.Where(t => t.Status == TaskStatus.Running && t.StartedAt is not null))
            {
                if (byId.GetValueOrDefault(task.AssignedWorkerId) is { } holder && holder.Gone() is null && holder.RunningTaskIds.Count > 0
                    && !holder.RunningTaskIds.Contains(task.Id) && holder.LastHeartbeatAt is { } beat
                    && beat.ToDateTime() > task.StartedAt.ToDateTime() + ReportGrace)
                {
                    issues.Add(new FoundIssue(tenant, $"task:{task.Id}",
                        $"Task {task.Id} is running under token {task.FencingToken} for worker {holder.Id} ({holder.Name}), whose heartbeats since it started do not report it.",
                        false,
                        new Dictionary<string, string>
                        {
                            ["worker_id"] = holder.Id,
                            ["task_id"] = task.Id,
                            ["fencing_token"] = task.FencingToken.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        }));
                }
            }
        }
        return issues;
    }

    private static bool HeldBy(Dictionary<string, Queue.V1.Task> leased, string taskId, string workerId) =>
        leased.TryGetValue(taskId, out var task) && string.Equals(task.AssignedWorkerId, workerId, StringComparison.OrdinalIgnoreCase);

    private static string Describe(Queue.V1.Task? task) => task switch
    {
        null => "the queue does not know",
        _ when task.IsLeased() => $"the queue has leased to worker {task.AssignedWorkerId} under token {task.FencingToken}",
        _ => $"is {task.Status.Name()} in the queue",
    };

    public async Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct)
    {
        var workerId = issue.Details.Text("worker_id");
        var taskId = issue.Details.Text("task_id");
        var worker = await clients.WorkerOrNullAsync(issue.Tenant, workerId, ct);
        if (worker.Gone() is not null || !worker!.RunningTaskIds.Contains(taskId))
        {
            return new FixOutcome(FixStatus.NoLongerPresent, worker.Gone() is { } why
                ? $"worker {workerId} is {why}"
                : $"worker {workerId} no longer reports task {taskId}");
        }
        var task = await clients.TaskOrNullAsync(issue.Tenant, taskId, ct);
        if (task is not null && task.IsLeased() && string.Equals(task.AssignedWorkerId, workerId, StringComparison.OrdinalIgnoreCase))
        {
            return new FixOutcome(FixStatus.NoLongerPresent, $"the queue now has task {taskId} leased to worker {workerId}");
        }
        if (dryRun)
        {
            return new FixOutcome(FixStatus.WouldFix, $"would tell worker {workerId} to drop task {taskId}, which {Describe(task)}");
        }
        try
        {
            await clients.Registry.SendWorkerCommandAsync(new SendWorkerCommandRequest
            {
                WorkerId = workerId,
                Command = new WorkerCommand
                {
                    CancelTask = new CancelTaskCommand
                    {
                        TaskId = taskId,
                        Reason = $"consistency check: the queue does not hold task {taskId} for this worker; it {Describe(task)}",
                    },
                },
            }, ServiceCall.For(issue.Tenant, ct));
            return new FixOutcome(FixStatus.Fixed, $"told worker {workerId} to drop task {taskId}, which {Describe(task)}");
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound)
        {
            return new FixOutcome(FixStatus.Failed, $"the registry refused the command to worker {workerId}: {e.Status.Detail}");
        }
    }
}
