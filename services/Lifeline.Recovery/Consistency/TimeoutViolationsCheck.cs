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

/// <summary>Running tasks past their own timeout (plus <c>Recovery:TimeoutGrace</c>) that the queue's maintenance has not timed out.</summary>
public sealed class TimeoutViolationsCheck(SuiteClients clients, CoveredTenants tenants, IOptions<RecoveryOptions> options, TimeProvider time) : IConsistencyCheck
{
    public CheckDefinition Definition { get; } = new()
    {
        Name = "timeout_violations",
        Description = "Running tasks whose started_at + timeout_seconds (+ Recovery:TimeoutGrace) has passed: the queue's maintenance should have timed them out.",
        Severity = Severity.High,
        Fixable = true,
        FixDescription = "Ends the attempt as timeout with QueueService.RecoverTask (TIMEOUT, the fencing token seen), as the queue's own timeout does.",
    };

    public async Task<IReadOnlyList<FoundIssue>> FindAsync(CancellationToken ct)
    {
        var issues = new List<FoundIssue>();
        var now = time.GetUtcNow().UtcDateTime;
        foreach (var tenant in await tenants.RefreshAsync(ct))
        {
            foreach (var task in await clients.TasksAsync(tenant, TaskStatus.Running, options.Value.ScanPageSize, ct))
            {
                if (Overdue(task, now) is not { } over)
                {
                    continue;
                }
                issues.Add(new FoundIssue(tenant, $"task:{task.Id}",
                    $"Task {task.Id} ({task.Type}) started at {task.StartedAt.ToDateTime():O} with a timeout of {task.TimeoutSeconds} s and is still running, "
                    + $"{over.TotalSeconds:F0} s past it (worker {task.AssignedWorkerId}).",
                    true,
                    new Dictionary<string, string>
                    {
                        ["task_id"] = task.Id,
                        ["fencing_token"] = task.FencingToken.ToString(CultureInfo.InvariantCulture),
                        ["started_at"] = task.StartedAt.ToDateTime().ToString("O", CultureInfo.InvariantCulture),
                        ["timeout_seconds"] = task.TimeoutSeconds.ToString(CultureInfo.InvariantCulture),
                        ["worker_id"] = task.AssignedWorkerId,
                    }));
            }
        }
        return issues;
    }

    /// <summary>How far past its timeout and the grace a running task is, or null when it is not.</summary>
    private TimeSpan? Overdue(Queue.V1.Task task, DateTime now)
    {
        if (task.Status != TaskStatus.Running || task.StartedAt is null)
        {
            return null;
        }
        var over = now - (task.StartedAt.ToDateTime() + TimeSpan.FromSeconds(task.TimeoutSeconds) + options.Value.TimeoutGrace);
        return over > TimeSpan.Zero ? over : null;
    }

    public async Task<FixOutcome> FixAsync(IssueToFix issue, bool dryRun, CancellationToken ct)
    {
        var taskId = issue.Details.Text("task_id");
        var token = issue.Details.Number("fencing_token");
        var task = await clients.TaskOrNullAsync(issue.Tenant, taskId, ct);
        if (task is null || task.FencingToken != token || Overdue(task, time.GetUtcNow().UtcDateTime) is null)
        {
            return new FixOutcome(FixStatus.NoLongerPresent, task is null
                ? $"task {taskId} no longer exists"
                : $"task {taskId} is no longer running past its timeout under token {token}: now {task.Status.Name()} under token {task.FencingToken}");
        }
        if (dryRun)
        {
            return new FixOutcome(FixStatus.WouldFix, $"would end task {taskId} (token {token}) as timed out");
        }
        try
        {
            var response = await clients.Queue.RecoverTaskAsync(new RecoverTaskRequest
            {
                TaskId = taskId,
                FencingToken = token,
                Action = Queue.V1.RecoveryAction.Timeout,
                Reason = new ErrorDetail { Code = "TASK_TIMEOUT", Message = "consistency check: running past its timeout", Severity = Severity.High },
            }, ServiceCall.For(issue.Tenant, ct));
            return response.Outcome == RecoverOutcome.TimedOut
                ? new FixOutcome(FixStatus.Fixed, $"task {taskId} ended as {response.Task.Status.Name()}")
                : new FixOutcome(FixStatus.NoLongerPresent, $"task {taskId} had already timed out under token {token}");
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound)
        {
            return new FixOutcome(FixStatus.Failed, $"the queue refused to time out task {taskId}: {e.Status.Detail}");
        }
    }
}
