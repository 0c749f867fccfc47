using System.Globalization;
using Grpc.Core;
using Lifeline.Common.V1;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Clients;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.SystemState;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.Options;
using TaskStatus = Lifeline.Queue.V1.TaskStatus;
using Lifeline.Recovery.Tenancy;
using Lifeline.ServiceDefaults.Clients;

namespace Lifeline.Recovery.Consistency;

/// <summary>Assigned or running tasks whose worker the registry does not know, or knows offline or deregistered.</summary>
public sealed class OrphanedAssignmentsCheck(SuiteClients clients, CoveredTenants tenants, IOptions<RecoveryOptions> options) : IConsistencyCheck
{
    public CheckDefinition Definition { get; } = new()
    {
        Name = "orphaned_assignments",
        Description = "Assigned or running tasks held by a worker the registry does not know, or knows offline or deregistered.",
        Severity = Severity.High,
        Fixable = true,
        FixDescription = "Requeues the task with QueueService.RecoverTask (REQUEUE, the fencing token seen, no retry used); the queue refuses "
            + "if the token moved or the worker is alive with a current lease.",
    };

    public async Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct)
    {
        var issues = new List<FoundIssue>();
        foreach (var tenant in await tenants.RefreshAsync(ct))
        {
            var workers = (await clients.AllWorkersAsync(tenant, ct)).ToDictionary(w => w.Id, StringComparer.OrdinalIgnoreCase);
            foreach (var status in new[] { TaskStatus.Assigned, TaskStatus.Running })
            {
                foreach (var task in await clients.TasksAsync(tenant, status, options.Value.ScanPageSize, ct))
                {
                    var why = workers.GetValueOrDefault(task.AssignedWorkerId).Gone();
                    if (why is null)
                    {
                        continue;
                    }
                    issues.Add(new FoundIssue(tenant, $"task:{task.Id}",
                        $"Task {task.Id} ({task.Type}) is {status.Name()} under fencing token {task.FencingToken}, held by worker {task.AssignedWorkerId}, which is {why}.",
                        true,
                        new Dictionary<string, string>
                        {
                            ["task_id"] = task.Id,
                            ["fencing_token"] = task.FencingToken.ToString(CultureInfo.InvariantCulture),
                            ["worker_id"] = task.AssignedWorkerId,
                            ["worker_state"] = why,
                            ["task_status"] = status.Name(),
                        }));
                }
            }
        }
        return issues;
    }

    public async Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct)
    {
        var taskId = issue.Details.Text("task_id");
        var token = issue.Details.Number("fencing_token");
        var workerId = issue.Details.Text("worker_id");
        var task = await clients.TaskOrNullAsync(issue.Tenant, taskId, ct);
        if (task is null || !task.IsLeased() || task.FencingToken != token || !string.Equals(task.AssignedWorkerId, workerId, StringComparison.OrdinalIgnoreCase))
        {
            return new FixOutcome(FixStatus.NoLongerPresent, task is null
                ? $"task {taskId} no longer exists"
                : $"task {taskId} moved on: now {task.Status.Name()} under token {task.FencingToken}");
        }
        var why = (await clients.WorkerOrNullAsync(issue.Tenant, workerId, ct)).Gone();
        if (why is null)
        {
            return new FixOutcome(FixStatus.NoLongerPresent, $"worker {workerId} is alive again; task {taskId} is not orphaned");
        }
        if (dryRun)
        {
            return new FixOutcome(FixStatus.WouldFix, $"would requeue task {taskId} (token {token}) held by worker {workerId} ({why}) with RecoverTask");
        }
        try
        {
            var response = await clients.Queue.RecoverTaskAsync(new RecoverTaskRequest
            {
                TaskId = taskId,
                FencingToken = token,
                Action = Queue.V1.RecoveryAction.Requeue,
                Reason = new ErrorDetail
                {
                    Code = "ORPHANED_ASSIGNMENT",
                    Message = $"consistency check: worker {workerId} is {why}",
                    Retryable = true,
                    Severity = Severity.High,
                },
            }, ServiceCall.For(issue.Tenant, ct));
            return response.Outcome == RecoverOutcome.AlreadyRecovered
                ? new FixOutcome(FixStatus.NoLongerPresent, $"task {taskId} was already recovered from token {token}")
                : new FixOutcome(FixStatus.Fixed, $"task {taskId} taken from worker {workerId} ({why}): now {response.Task.Status.Name()}");
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound)
        {
            return new FixOutcome(FixStatus.Failed, $"the queue refused to recover task {taskId}: {e.Status.Detail}");
        }
    }
}
