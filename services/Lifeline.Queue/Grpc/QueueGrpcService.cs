using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Queue.Administration;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Enqueuing;
using Lifeline.Queue.Events;
using Lifeline.Queue.Leasing;
using Lifeline.Queue.Options;
using Lifeline.Queue.Reading;
using Lifeline.Queue.Recovery;
using Lifeline.Queue.V1;
using Task = System.Threading.Tasks.Task;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Paging;
using Lifeline.ServiceDefaults.Tenancy;
using Lifeline.ServiceDefaults.Validation;
using Microsoft.Extensions.Options;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Queue.Grpc;

/// <summary>The QueueService contract: validates, delegates to the domain classes, maps the result.</summary>
public sealed class QueueGrpcService(
    TaskEnqueuer enqueuer, TaskLeaser leaser, LeaseHolderOperations holders, TaskAdministration administration,
    TaskQueries queries, TaskEventFeed feed, TaskRecovery recovery, IOptions<QueueOptions> options,
    DependencyRepair dependencyRepair, TimeoutEnforcement timeouts, TaskDispatcher dispatcher) : QueueService.QueueServiceBase
{
    private const string TaskHistoryListing = "queue.task_history";

    private int MaxPayload => options.Value.MaxPayloadBytes;

    public override async Task<EnqueueTaskResponse> EnqueueTask(EnqueueTaskRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var task = RequestValidation.Task(v, "task", request.Task, MaxPayload);
        v.ThrowIfAny();
        var (record, created) = await enqueuer.EnqueueAsync(tenant, task, context.CancellationToken);
        return new EnqueueTaskResponse { Task = record.ToProto(), Created = created };
    }

    public override async Task<EnqueueTasksResponse> EnqueueTasks(EnqueueTasksRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var batch = RequestValidation.Batch(request, MaxPayload);
        var (tasks, created) = await enqueuer.EnqueueBatchAsync(tenant, batch, context.CancellationToken);
        var response = new EnqueueTasksResponse { CreatedCount = created };
        response.Tasks.AddRange(tasks.Select(t => t.ToProto()));
        return response;
    }

    public override async Task<GetTaskResponse> GetTask(GetTaskRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var id = TaskId(request.TaskId);
        return new GetTaskResponse { Task = (await queries.GetAsync(tenant, id, context.CancellationToken)).ToProto() };
    }

    public override async Task<ListTasksResponse> ListTasks(ListTasksRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var filter = RequestValidation.Filter(v, PageCursor.Tasks, request.Status, request.Type, request.WorkerId, request.PageSize, request.PageToken,
            request.WorkflowId);
        v.ThrowIfAny();
        var (tasks, next) = await queries.ListAsync(tenant, filter, context.CancellationToken);
        var response = new ListTasksResponse { NextPageToken = next?.Encode(PageCursor.Tasks) ?? "" };
        response.Tasks.AddRange(tasks.Select(t => t.ToProto()));
        return response;
    }

    public override async Task<CancelTaskResponse> CancelTask(CancelTaskRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("task_id", request.TaskId);
        var reason = RequestValidation.Text(v, "reason", request.Reason, 1024) ?? "cancelled by a caller";
        v.ThrowIfAny();
        var (task, cascaded) = await administration.CancelAsync(tenant, id, reason, context.CancellationToken);
        return new CancelTaskResponse { Task = task.ToProto(), CascadedCancellations = cascaded };
    }

    public override async Task<LeaseTasksResponse> LeaseTasks(LeaseTasksRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var lease = RequestValidation.Lease(request);
        var tasks = await leaser.LeaseAsync(tenant, lease, context.CancellationToken);
        var response = new LeaseTasksResponse();
        response.Tasks.AddRange(tasks.Select(t => t.ToProto()));
        return response;
    }

    public override async Task<StartTaskResponse> StartTask(StartTaskRequest request, ServerCallContext context)
    {
        var (tenant, start) = Holder(context, v => RequestValidation.Start(v, "", request));
        return new StartTaskResponse { Task = (await holders.ApplyAsync(tenant, start, context.CancellationToken)).Task.ToProto() };
    }

    public override async Task<ReportProgressResponse> ReportProgress(ReportProgressRequest request, ServerCallContext context)
    {
        var (tenant, progress) = Holder(context, v => RequestValidation.Progress(v, "", request));
        return new ReportProgressResponse { Task = (await holders.ApplyAsync(tenant, progress, context.CancellationToken)).Task.ToProto() };
    }

    public override async Task<ExtendLeaseResponse> ExtendLease(ExtendLeaseRequest request, ServerCallContext context)
    {
        var (tenant, extend) = Holder(context, v => RequestValidation.ExtendLease(v, "", request));
        return new ExtendLeaseResponse { Task = (await holders.ApplyAsync(tenant, extend, context.CancellationToken)).Task.ToProto() };
    }

    public override async Task<CompleteTaskResponse> CompleteTask(CompleteTaskRequest request, ServerCallContext context)
    {
        var (tenant, complete) = Holder(context, v => RequestValidation.Complete(v, "", request, MaxPayload));
        return new CompleteTaskResponse { Task = (await holders.ApplyAsync(tenant, complete, context.CancellationToken)).Task.ToProto() };
    }

    public override async Task<CompleteTasksResponse> CompleteTasks(CompleteTasksRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        RepeatedFields.ThrowIfCountOutside("completions", request.Completions.Count, RequestValidation.MaxCompletions, min: 1, items: "completions");
        var v = new Violations();
        var completions = new List<Completion>(request.Completions.Count);
        var seen = new HashSet<Guid>();
        RepeatedFields.CheckItems(v, "completions", request.Completions.Count, (v, i) =>
        {
            var c = request.Completions[i];
            var id = v.Uuid($"completions[{i}].task_id", c.TaskId);
            v.AddIf(id != Guid.Empty && !seen.Add(id), $"completions[{i}].task_id", "appears more than once");
            v.AddIf(c.FencingToken <= 0, $"completions[{i}].fencing_token", "is required: the positive token returned with your lease");
            var result = RequestValidation.JsonValue(v, $"completions[{i}].result", c.Result, MaxPayload);
            completions.Add(new Completion(id, c.FencingToken, result));
        });
        v.ThrowIfAny();
        var outcomes = await holders.CompleteManyAsync(tenant, completions, context.CancellationToken);
        var response = new CompleteTasksResponse();
        foreach (var outcome in outcomes)
        {
            var result = new TaskCompletionResult { TaskId = outcome.TaskId.ToString(), Accepted = outcome.Refusal is null };
            if (outcome.Refusal is { } refusal)
            {
                result.Code = (int)refusal.Code;
                result.Reason = refusal.Reason;
                result.Message = refusal.Message;
            }
            else
            {
                response.AcceptedCount++;
            }
            response.Results.Add(result);
        }
        return response;
    }

    public override async Task<FailTaskResponse> FailTask(FailTaskRequest request, ServerCallContext context)
    {
        var (tenant, fail) = Holder(context, v => RequestValidation.Fail(v, "", request));
        var (task, willRetry) = await holders.ApplyAsync(tenant, fail, context.CancellationToken);
        return new FailTaskResponse { Task = task.ToProto(), WillRetry = willRetry };
    }

    public override async Task<ReleaseTaskResponse> ReleaseTask(ReleaseTaskRequest request, ServerCallContext context)
    {
        var (tenant, release) = Holder(context, v => RequestValidation.Release(v, "", request));
        return new ReleaseTaskResponse { Task = (await holders.ApplyAsync(tenant, release, context.CancellationToken)).Task.ToProto() };
    }

    public override async Task<RecoverTaskResponse> RecoverTask(RecoverTaskRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var recover = RequestValidation.Recovery(request);
        if (request.Action == RecoveryAction.Timeout)
        {
            var (timedOut, changed) = await timeouts.EnforceAsync(tenant, recover.TaskId, recover.FencingToken, recover.Reason.Code, context.CancellationToken);
            return new RecoverTaskResponse { Task = timedOut.ToProto(), Outcome = changed ? RecoverOutcome.TimedOut : RecoverOutcome.AlreadyRecovered };
        }
        var (task, outcome) = await recovery.RecoverAsync(tenant, recover, context.CancellationToken);
        return new RecoverTaskResponse
        {
            Task = task.ToProto(),
            Outcome = outcome switch
            {
                RecoveryOutcome.Requeued => RecoverOutcome.Requeued,
                RecoveryOutcome.DeadLettered => RecoverOutcome.DeadLettered,
                _ => RecoverOutcome.AlreadyRecovered,
            },
        };
    }

    public override async Task<AddDependencyResponse> AddDependency(AddDependencyRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("task_id", request.TaskId);
        var dependsOn = v.Uuid("depends_on_task_id", request.DependsOnTaskId);
        v.AddIf(id != Guid.Empty && id == dependsOn, "depends_on_task_id", "a task cannot depend on itself");
        v.DefinedEnum("type", request.Type);
        v.ThrowIfAny();
        var task = await administration.AddDependencyAsync(tenant, id, dependsOn, DependencyResolver.TypeName(request.Type), context.CancellationToken);
        return new AddDependencyResponse { Task = task.ToProto() };
    }

    public override async Task<RemoveDependencyResponse> RemoveDependency(RemoveDependencyRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("task_id", request.TaskId);
        var dependsOn = v.Uuid("depends_on_task_id", request.DependsOnTaskId);
        v.AddIf(id != Guid.Empty && id == dependsOn, "depends_on_task_id", "a task never depends on itself");
        v.ThrowIfAny();
        var (task, state) = await dependencyRepair.RemoveAsync(tenant, id, dependsOn, context.CancellationToken);
        return new RemoveDependencyResponse { Task = task.ToProto(), RemovedState = state };
    }

    public override async Task<ListActiveTenantsResponse> ListActiveTenants(ListActiveTenantsRequest request, ServerCallContext context) =>
        new() { Tenants = { await queries.ActiveTenantsAsync(context.CancellationToken) } };

    public override async Task<FindDependencyCyclesResponse> FindDependencyCycles(FindDependencyCyclesRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var response = new FindDependencyCyclesResponse();
        foreach (var cycle in await dependencyRepair.FindCyclesAsync(tenant, context.CancellationToken))
        {
            var proto = new DependencyCycle();
            proto.TaskIds.AddRange(cycle.TaskIds.Select(id => id.ToString()));
            proto.Edges.AddRange(cycle.Edges.Select(e => new DependencyEdge
            {
                TaskId = e.TaskId.ToString(),
                DependsOnTaskId = e.DependsOnId.ToString(),
                Type = e.Type switch { "completion" => DependencyType.Completion, "failure" => DependencyType.Failure, _ => DependencyType.Success },
                CreatedAt = Time(e.CreatedAt),
            }));
            response.Cycles.Add(proto);
        }
        return response;
    }

    public override async Task<GetTaskHistoryResponse> GetTaskHistory(GetTaskHistoryRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var id = v.Uuid("task_id", request.TaskId);
        var size = v.PageSize("page_size", request.PageSize, 100, 1000);
        long after = 0;
        PageTokens.TryRead(v, request.PageToken, token => PageTokens.TryDecode(TaskHistoryListing, token, out after) && after >= 0);
        v.ThrowIfAny();
        var (events, next) = await queries.HistoryAsync(tenant, id, size, after, context.CancellationToken);
        var response = new GetTaskHistoryResponse { NextPageToken = next is { } n ? PageTokens.Encode(TaskHistoryListing, n) : "" };
        response.Events.AddRange(events.Select(e => e.ToProto()));
        return response;
    }

    public override async Task<ListDeadLettersResponse> ListDeadLetters(ListDeadLettersRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var filter = RequestValidation.Filter(v, PageCursor.DeadLetters, V1.TaskStatus.Unspecified, request.Type, "", request.PageSize, request.PageToken);
        v.ThrowIfAny();
        var (tasks, next) = await queries.ListDeadLettersAsync(tenant, filter, context.CancellationToken);
        var response = new ListDeadLettersResponse { NextPageToken = next?.Encode(PageCursor.DeadLetters) ?? "" };
        response.Tasks.AddRange(tasks.Select(t => t.ToProto()));
        return response;
    }

    public override async Task<RedriveDeadLettersResponse> RedriveDeadLetters(RedriveDeadLettersRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        // Size before work: more ids than a redrive takes are refused before any id is parsed.
        RepeatedFields.ThrowIfCountOutside("task_ids", request.TaskIds.Count, RequestValidation.MaxRedriveIds, items: "ids");
        var v = new Violations();
        var parsed = new List<Guid>(request.TaskIds.Count);
        RepeatedFields.CheckItems(v, "task_ids", request.TaskIds.Count, (v, i) => parsed.Add(v.Uuid($"task_ids[{i}]", request.TaskIds[i])));
        var ids = parsed.Distinct().ToList();
        if (!string.IsNullOrEmpty(request.Type))
        {
            RequestValidation.TaskType(v, "type", request.Type);
        }
        v.AddIf(request.TaskIds.Count > 0 && !string.IsNullOrEmpty(request.Type), "type", "give task_ids or a type, not both");
        var limit = request.Limit == 0 ? 1000 : request.Limit;
        v.AddIf(limit is < 1 or > 10_000, "limit", $"must be between 1 and 10000 (0 means 1000); got {request.Limit}");
        v.ThrowIfAny();
        var redriven = await administration.RedriveAsync(tenant, ids, string.IsNullOrEmpty(request.Type) ? null : request.Type, limit, context.CancellationToken);
        var response = new RedriveDeadLettersResponse();
        response.TaskIds.AddRange(redriven.Select(id => id.ToString()));
        return response;
    }

    public override async Task<GetQueueStatsResponse> GetQueueStats(GetQueueStatsRequest request, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        if (!string.IsNullOrEmpty(request.Type))
        {
            var v = new Violations();
            RequestValidation.TaskType(v, "type", request.Type);
            v.ThrowIfAny();
        }
        var stats = await queries.StatsAsync(tenant, string.IsNullOrEmpty(request.Type) ? null : request.Type, context.CancellationToken);
        var response = new GetQueueStatsResponse { OldestReadyAge = Duration.FromTimeSpan(stats.OldestReadyAge) };
        foreach (var (type, status, count) in stats.Counts)
        {
            var proto = Domain.TaskState.ToProto(status);
            response.Counts.Add(new TaskCount { Type = type, Status = proto, Count = count });
            var name = QueueReflection.Descriptor.EnumTypes.First(e => e.Name == "TaskStatus").FindValueByNumber((int)proto).Name;
            response.Totals[name] = response.Totals.GetValueOrDefault(name) + count;
        }
        return response;
    }

    public override async Task WatchTasks(WatchTasksRequest request, IServerStreamWriter<WatchTasksResponse> responseStream, ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var filter = RequestValidation.Watch(request);
        try
        {
            await foreach (var e in feed.WatchAsync(tenant, filter, context.CancellationToken))
            {
                await responseStream.WriteAsync(new WatchTasksResponse { Event = e.ToProto() }, context.CancellationToken);
            }
        }
        catch (OperationCanceledException) when (context.CancellationToken.IsCancellationRequested)
        {
            // The watcher went away: a normal end of the stream.
        }
    }

    public override async Task Dispatch(IAsyncStreamReader<DispatchRequest> requestStream, IServerStreamWriter<DispatchResponse> responseStream,
        ServerCallContext context)
    {
        var tenant = Tenant.From(context);
        var ct = context.CancellationToken;
        try
        {
            if (!await requestStream.MoveNext(ct))
            {
                return; // the worker hung up before opening
            }
            var opening = RequestValidation.Open(requestStream.Current);
            await dispatcher.RunAsync(tenant, opening, Messages(requestStream, MaxPayload, ct),
                (output, token) => responseStream.WriteAsync(DispatchMapper.ToProto(output), token), ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The worker went away: a normal end of the stream.
        }

        static async IAsyncEnumerable<DispatchMessage> Messages(IAsyncStreamReader<DispatchRequest> requests, int maxPayload,
            [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
        {
            while (await requests.MoveNext(ct))
            {
                yield return RequestValidation.Dispatch(requests.Current, maxPayload);
            }
        }
    }

    private static Guid TaskId(string value)
    {
        var v = new Violations();
        var id = v.Uuid("task_id", value);
        v.ThrowIfAny();
        return id;
    }

    /// <summary>Validates a lease holder's call (every violation at once), for the caller's tenant.</summary>
    private static (string Tenant, T Command) Holder<T>(ServerCallContext context, Func<Violations, T> validate) where T : HolderCommand
    {
        var tenant = Tenant.From(context);
        var v = new Violations();
        var command = validate(v);
        v.ThrowIfAny();
        return (tenant, command);
    }
}
