using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Common.V1;
using Lifeline.Queue.Data;
using Lifeline.Queue.Dependencies;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Enqueuing;
using Lifeline.Queue.Events;
using Lifeline.Queue.Leasing;
using Lifeline.Queue.Reading;
using Lifeline.Queue.Recovery;
using Lifeline.Queue.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Paging;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Queue.Grpc;

/// <summary>
/// Turns contract requests into validated domain requests, collecting every field violation of a
/// request before refusing it (INVALID_ARGUMENT with BadRequest), so a refused request writes nothing.
/// </summary>
internal static partial class RequestValidation
{
    public const int MaxBatchTasks = 10_000;
    public const int MaxCompletions = 1_000;
    public const int MaxRedriveIds = 1_000;
    public const int MaxWatchedTypes = 100;
    private static readonly TimeSpan DefaultLease = TimeSpan.FromSeconds(30);

    public static readonly HashSet<string> EventTypes =
    [
        "enqueued", "leased", "started", "progress", "lease_extended", "completed", "failed", "retry_scheduled", "lease_expired",
        "released", "cancelled", "timed_out", "dead_lettered", "redriven", "dependency_added", "dependency_removed", "dependencies_met", "recovered",
    ];

    [GeneratedRegex("^[A-Za-z0-9._:/-]{1,128}$")]
    private static partial Regex TaskTypePattern();

    [GeneratedRegex("^[A-Za-z0-9._:/-]{1,200}$")]
    private static partial Regex WorkflowIdPattern();

    public static NewTask Task(Violations v, string path, TaskSpec? spec, int maxPayloadBytes)
    {
        if (spec is null)
        {
            v.Add(path, "is required");
            return null!;
        }
        TaskType(v, $"{path}.type", spec.Type);
        var payload = JsonObject(v, $"{path}.payload", spec.Payload, maxPayloadBytes);
        v.AddIf(spec.Priority is < -1_000_000 or > 1_000_000, $"{path}.priority", $"must be between -1000000 and 1000000; got {spec.Priority}");
        var maxRetries = spec.HasMaxRetries ? spec.MaxRetries : 3;
        v.AddIf(maxRetries is < 0 or > 100, $"{path}.max_retries", $"must be between 0 and 100; got {maxRetries}");
        var timeout = spec.HasTimeoutSeconds ? spec.TimeoutSeconds : 3600;
        v.AddIf(timeout is <= 0 or > 604_800, $"{path}.timeout_seconds", $"must be between 1 and 604800 seconds; got {timeout}");
        DateTime? notBefore = spec.NotBefore is null ? null : Time(v, $"{path}.not_before", spec.NotBefore);
        var key = string.IsNullOrEmpty(spec.IdempotencyKey) ? null : spec.IdempotencyKey;
        v.AddIf(key is { Length: > 256 }, $"{path}.idempotency_key", "must be at most 256 characters");
        v.AddIf(key is not null && key.Contains('\0', StringComparison.Ordinal), $"{path}.idempotency_key", "must not contain NUL characters");
        var retry = Retry(v, $"{path}.retry_policy", spec.RetryPolicy);
        var workflow = string.IsNullOrEmpty(spec.WorkflowId) ? null : WorkflowId(v, $"{path}.workflow_id", spec.WorkflowId);
        return new NewTask(spec.Type, payload, spec.Priority, maxRetries, timeout, notBefore, key, retry, workflow);
    }

    private static RetrySchedule Retry(Violations v, string path, RetryPolicy? policy)
    {
        if (policy is null)
        {
            return RetrySchedule.Default;
        }
        v.DefinedEnum($"{path}.backoff", policy.Backoff);
        var initial = policy.InitialInterval is null ? RetrySchedule.Default.Initial : Duration(v, $"{path}.initial_interval", policy.InitialInterval, TimeSpan.Zero, TimeSpan.FromHours(1));
        var maximum = policy.MaximumInterval is null
            ? (initial > RetrySchedule.Default.Maximum ? initial : RetrySchedule.Default.Maximum)
            : Duration(v, $"{path}.maximum_interval", policy.MaximumInterval, TimeSpan.Zero, TimeSpan.FromHours(24));
        v.AddIf(maximum < initial, $"{path}.maximum_interval", "must not be shorter than initial_interval");
        v.AddIf(double.IsNaN(policy.Jitter) || policy.Jitter < 0 || policy.Jitter > 1, $"{path}.jitter", $"must be between 0 and 1; got {policy.Jitter}");
        var strategy = policy.Backoff == BackoffStrategy.Unspecified ? BackoffStrategy.Exponential : policy.Backoff;
        return new RetrySchedule(strategy, initial, maximum, double.IsNaN(policy.Jitter) ? 0 : policy.Jitter);
    }

    public static void TaskType(Violations v, string path, string type)
    {
        if (string.IsNullOrEmpty(type))
        {
            v.Add(path, "is required");
        }
        else if (!TaskTypePattern().IsMatch(type))
        {
            v.Add(path, "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'");
        }
    }

    /// <summary>A workflow id (of the checkpoint service): 1 to 200 characters of letters, digits, '.', '_', '-', ':' and '/'.</summary>
    public static string WorkflowId(Violations v, string path, string value)
    {
        v.AddIf(!WorkflowIdPattern().IsMatch(value), path, "must be 1 to 200 characters of letters, digits, '.', '_', '-', ':' and '/'");
        return value;
    }

    /// <summary>A payload: a JSON object (empty means {}) that jsonb stores as it is, within the size limit.</summary>
    public static string JsonObject(Violations v, string path, string text, int maxBytes)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "{}";
        }
        if (!WithinSize(v, path, text, maxBytes))
        {
            return "{}";
        }
        var kind = StorableJson.Check(v, path, text);
        if (kind is { } k && k != JsonValueKind.Object)
        {
            v.Add(path, $"must be a JSON object; got a JSON {k.ToString().ToLowerInvariant()}");
        }
        return text;
    }

    /// <summary>A result: any JSON value (empty means none) that jsonb stores as it is, within the size limit.</summary>
    public static string? JsonValue(Violations v, string path, string text, int maxBytes)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        if (!WithinSize(v, path, text, maxBytes))
        {
            return null;
        }
        StorableJson.Check(v, path, text);
        return text;
    }

    private static bool WithinSize(Violations v, string path, string text, int maxBytes)
    {
        var bytes = Encoding.UTF8.GetByteCount(text);
        if (bytes > maxBytes)
        {
            v.Add(path, $"is {bytes} bytes; the limit is {maxBytes} bytes");
            return false;
        }
        return true;
    }

    /// <summary>A duration in [min, max], compared exactly (a −1 ns duration is negative, not 0).</summary>
    public static TimeSpan Duration(Violations v, string path, Duration? value, TimeSpan min, TimeSpan max, TimeSpan? fallback = null) =>
        v.Duration(path, value, min, max, fallback);

    private static DateTime? Time(Violations v, string path, Timestamp value) => v.Timestamp(path, value);

    public static long Token(Violations v, long token, string field = "fencing_token")
    {
        v.AddIf(token <= 0, field, "is required: the positive token returned with your lease");
        return token;
    }

    public static string? Text(Violations v, string path, string value, int max)
    {
        v.Text(path, value, max);
        return string.IsNullOrEmpty(value) ? null : value;
    }

    // ---- per-request ----

    public static IReadOnlyList<NewBatchTask> Batch(EnqueueTasksRequest request, int maxPayloadBytes)
    {
        // Size before work: an oversized batch is refused before any task is looked at.
        RepeatedFields.ThrowIfCountOutside("tasks", request.Tasks.Count, MaxBatchTasks, min: 1, items: "tasks");
        var v = new Violations();
        // Keys first (the first task with a key owns it), so a dependency may name a later task.
        var indexOfKey = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < request.Tasks.Count; i++)
        {
            if (request.Tasks[i].Key is { Length: > 0 and <= 128 } key)
            {
                indexOfKey.TryAdd(key, i);
            }
        }
        var idempotencyKeys = new HashSet<string>(StringComparer.Ordinal);
        var result = new List<NewBatchTask>(request.Tasks.Count);
        var edges = new List<(int, int)>();
        RepeatedFields.CheckItems(v, "tasks", request.Tasks.Count, (v, i) =>
        {
            var entry = request.Tasks[i];
            var key = entry.Key;
            if (key.Length > 128)
            {
                v.Add($"tasks[{i}].key", "must be at most 128 characters");
            }
            else if (key.Length > 0 && indexOfKey[key] != i)
            {
                v.Add($"tasks[{i}].key", $"'{Violations.Truncate(key, 64)}' is used by tasks[{indexOfKey[key]}] too; keys must be unique in a batch");
            }
            var task = Task(v, $"tasks[{i}].task", entry.Task, maxPayloadBytes);
            if (task?.IdempotencyKey is { } idem && !idempotencyKeys.Add(idem))
            {
                v.Add($"tasks[{i}].task.idempotency_key", "is used by another task of this batch");
            }
            if (!RepeatedFields.CountWithin(v, $"tasks[{i}].depends_on", entry.DependsOn.Count, MaxBatchTasks, items: "dependencies"))
            {
                return;
            }
            var dependsOn = new List<BatchEdge>(entry.DependsOn.Count);
            var seenTargets = new HashSet<string>(StringComparer.Ordinal);
            RepeatedFields.CheckItems(v, $"tasks[{i}].depends_on", entry.DependsOn.Count, (v, d) =>
            {
                var dep = entry.DependsOn[d];
                var path = $"tasks[{i}].depends_on[{d}]";
                v.DefinedEnum($"{path}.type", dep.Type);
                var type = DependencyResolver.TypeName(dep.Type);
                switch (dep.TargetCase)
                {
                    case BatchDependency.TargetOneofCase.TaskKey:
                        if (!indexOfKey.TryGetValue(dep.TaskKey, out var j))
                        {
                            v.Add($"{path}.task_key", $"no task of this batch has key '{Violations.Truncate(dep.TaskKey, 64)}'");
                        }
                        else if (j == i)
                        {
                            v.Add($"{path}.task_key", "a task cannot depend on itself");
                        }
                        else if (!seenTargets.Add("k:" + dep.TaskKey))
                        {
                            v.Add($"{path}.task_key", "the same dependency is listed twice");
                        }
                        else
                        {
                            dependsOn.Add(new BatchEdge(j, null, type));
                            edges.Add((i, j));
                        }
                        break;
                    case BatchDependency.TargetOneofCase.TaskId:
                        var id = v.Uuid($"{path}.task_id", dep.TaskId);
                        if (id != Guid.Empty && !seenTargets.Add("i:" + id))
                        {
                            v.Add($"{path}.task_id", "the same dependency is listed twice");
                        }
                        else if (id != Guid.Empty)
                        {
                            dependsOn.Add(new BatchEdge(null, id, type));
                        }
                        break;
                    default:
                        v.Add(path, "must name a task_key or a task_id");
                        break;
                }
            });
            result.Add(new NewBatchTask(string.IsNullOrEmpty(entry.Key) ? null : entry.Key, task!, dependsOn));
        });
        v.ThrowIfAny();
        if (DependencyGraph.FindCycle(request.Tasks.Count, edges) is { } cycle)
        {
            throw new DependencyCycleException(cycle.Select(i => request.Tasks[i].Key).ToList());
        }
        return result;
    }

    public static LeaseRequest Lease(LeaseTasksRequest request)
    {
        ThrowIfTooManyTypes("task_types", request.TaskTypes.Count);
        var v = new Violations();
        var (types, lease) = LeaseTerms(v, "", request.WorkerId, request.TaskTypes, request.LeaseDuration);
        var max = request.MaxTasks == 0 ? 1 : request.MaxTasks;
        v.AddIf(max is < 1 or > MaxSlots, "max_tasks", $"must be between 1 and {MaxSlots} (0 means 1); got {request.MaxTasks}");
        var wait = Duration(v, "wait", request.Wait, TimeSpan.Zero, TimeSpan.FromSeconds(30), TimeSpan.Zero);
        v.ThrowIfAny();
        return new LeaseRequest(request.WorkerId, types, max, lease, wait, request.Start);
    }

    /// <summary>Most tasks one lease or one dispatch stream holds at once.</summary>
    public const int MaxSlots = 500;

    private static void ThrowIfTooManyTypes(string field, int count) => RepeatedFields.ThrowIfCountOutside(field, count, 100, items: "task types");

    /// <summary>What LeaseTasks and a dispatch stream's open share: the worker, its task types (1 to 100) and the lease duration.</summary>
    private static (string[] Types, TimeSpan Lease) LeaseTerms(Violations v, string path, string workerId,
        Google.Protobuf.Collections.RepeatedField<string> taskTypes, Duration? leaseDuration)
    {
        WorkerId(v, path + "worker_id", workerId, required: true);
        RepeatedFields.CountWithin(v, path + "task_types", taskTypes.Count, 100, min: 1, items: "task types");
        RepeatedFields.CheckItems(v, path + "task_types", taskTypes.Count, (v, i) => TaskType(v, $"{path}task_types[{i}]", taskTypes[i]));
        var lease = Duration(v, path + "lease_duration", leaseDuration, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), DefaultLease);
        return (taskTypes.Distinct(StringComparer.Ordinal).ToArray(), lease);
    }

    // ---- a lease holder's calls: the unary calls (path "") and the dispatch stream's messages (path "complete." ...) ----

    private static (Guid Id, long Token) Holder(Violations v, string path, string taskId, long token) =>
        (v.Uuid(path + "task_id", taskId), Token(v, token, path + "fencing_token"));

    public static StartCommand Start(Violations v, string path, StartTaskRequest request)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        return new StartCommand(id, token);
    }

    public static CompleteCommand Complete(Violations v, string path, CompleteTaskRequest request, int maxPayloadBytes)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        return new CompleteCommand(id, token, JsonValue(v, path + "result", request.Result, maxPayloadBytes));
    }

    public static FailCommand Fail(Violations v, string path, FailTaskRequest request)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        return new FailCommand(id, token, Failure(v, path, request.Error, request.RetryAfter));
    }

    public static ReleaseCommand Release(Violations v, string path, ReleaseTaskRequest request)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        var reason = Text(v, path + "reason", request.Reason, 1024);
        var delay = Duration(v, path + "delay", request.Delay, TimeSpan.Zero, TimeSpan.FromHours(24), TimeSpan.Zero);
        return new ReleaseCommand(id, token, reason, delay);
    }

    public static ProgressCommand Progress(Violations v, string path, ReportProgressRequest request)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        v.AddIf(request.Percent is < 0 or > 100, path + "percent", $"must be between 0 and 100; got {request.Percent}");
        var message = Text(v, path + "message", request.Message, 1024);
        TimeSpan? lease = request.LeaseDuration is null
            ? null
            : Duration(v, path + "lease_duration", request.LeaseDuration, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1));
        return new ProgressCommand(id, token, request.Percent, message, lease);
    }

    public static ExtendLeaseCommand ExtendLease(Violations v, string path, ExtendLeaseRequest request)
    {
        var (id, token) = Holder(v, path, request.TaskId, request.FencingToken);
        var lease = Duration(v, path + "lease_duration", request.LeaseDuration, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), DefaultLease);
        return new ExtendLeaseCommand(id, token, lease);
    }

    // ---- the dispatch stream ----

    /// <summary>The first message of a dispatch stream: it must be `open`, validated as LeaseTasks is.</summary>
    public static DispatchOpening Open(DispatchRequest request)
    {
        if (request.KindCase != DispatchRequest.KindOneofCase.Open)
        {
            throw ValidationException.For("open", "the first message of a dispatch stream must be `open`");
        }
        var open = request.Open;
        ThrowIfTooManyTypes("open.task_types", open.TaskTypes.Count);
        var v = new Violations();
        var (types, lease) = LeaseTerms(v, "open.", open.WorkerId, open.TaskTypes, open.LeaseDuration);
        v.AddIf(open.Slots is < 1 or > MaxSlots, "open.slots", $"must be between 1 and {MaxSlots}; got {open.Slots}");
        v.ThrowIfAny();
        return new DispatchOpening(open.WorkerId, types, open.Slots, lease);
    }

    /// <summary>A message after `open`: a capacity change or a holder's call, validated as the unary call is (fields prefixed with the oneof's name).</summary>
    public static DispatchMessage Dispatch(DispatchRequest request, int maxPayloadBytes)
    {
        var v = new Violations();
        DispatchMessage message;
        switch (request.KindCase)
        {
            case DispatchRequest.KindOneofCase.Capacity:
                var slots = request.Capacity.Slots;
                v.AddIf(slots is < 0 or > MaxSlots, "capacity.slots", $"must be between 0 and {MaxSlots}; got {slots}");
                message = new DispatchMessage(request.RequestId, null, slots);
                break;
            case DispatchRequest.KindOneofCase.Complete:
                message = new DispatchMessage(request.RequestId, Complete(v, "complete.", request.Complete, maxPayloadBytes), null);
                break;
            case DispatchRequest.KindOneofCase.Fail:
                message = new DispatchMessage(request.RequestId, Fail(v, "fail.", request.Fail), null);
                break;
            case DispatchRequest.KindOneofCase.Progress:
                message = new DispatchMessage(request.RequestId, Progress(v, "progress.", request.Progress), null);
                break;
            case DispatchRequest.KindOneofCase.ExtendLease:
                message = new DispatchMessage(request.RequestId, ExtendLease(v, "extend_lease.", request.ExtendLease), null);
                break;
            case DispatchRequest.KindOneofCase.Release:
                message = new DispatchMessage(request.RequestId, Release(v, "release.", request.Release), null);
                break;
            case DispatchRequest.KindOneofCase.Open:
                throw ValidationException.For("open", "a dispatch stream is opened once: `open` is only allowed as the first message");
            default:
                throw ValidationException.For("kind", "is required: one of capacity, complete, fail, progress, extend_lease, release");
        }
        v.ThrowIfAny();
        return message;
    }

    public static void WorkerId(Violations v, string path, string value, bool required)
    {
        if (string.IsNullOrEmpty(value))
        {
            v.AddIf(required, path, "is required");
        }
        else
        {
            v.AddIf(value.Length > 128 || value.Contains('\0', StringComparison.Ordinal), path, "must be 1 to 128 characters without NUL");
        }
    }

    private static FailureReport Failure(Violations v, string path, ErrorDetail? error, Duration? retryAfter)
    {
        var stored = Error(v, path + "error", error);
        if (stored is null)
        {
            return null!;
        }
        TimeSpan? after = retryAfter is null ? null : Duration(v, path + "retry_after", retryAfter, TimeSpan.Zero, TimeSpan.FromHours(24));
        return new FailureReport(stored, after);
    }

    /// <summary>A required ErrorDetail (code required, bounded sizes) as it is stored; null when missing.</summary>
    private static StoredError? Error(Violations v, string path, ErrorDetail? error)
    {
        if (error is null)
        {
            v.Add(path, "is required");
            return null;
        }
        // Stored in jsonb (the task's error, its history): bounded, and without NUL.
        v.Text($"{path}.code", error.Code, 128, required: true);
        v.Text($"{path}.message", error.Message, 4096);
        v.DefinedEnum($"{path}.severity", error.Severity);
        if (RepeatedFields.CountWithin(v, $"{path}.details", error.Details.Count, 64, items: "entries"))
        {
            v.AddIf(error.Details.Any(d => d.Key.Length > 128 || d.Value.Length > 4096), $"{path}.details", "keys must be at most 128 and values at most 4096 characters");
            v.AddIf(error.Details.Any(d => d.Key.Contains('\0', StringComparison.Ordinal) || d.Value.Contains('\0', StringComparison.Ordinal)),
                $"{path}.details", "keys and values must not contain the NUL character");
        }
        return new StoredError(error.Code, error.Message, error.Retryable, TaskMapper.SeverityName(error.Severity),
            error.Details.Count == 0 ? null : new Dictionary<string, string>(error.Details));
    }

    public static RecoveryRequest Recovery(RecoverTaskRequest request)
    {
        var v = new Violations();
        var id = v.Uuid("task_id", request.TaskId);
        Token(v, request.FencingToken);
        if (request.Action == RecoveryAction.Unspecified)
        {
            v.Add("action", "is required: RECOVERY_ACTION_REQUEUE, RECOVERY_ACTION_DEAD_LETTER or RECOVERY_ACTION_TIMEOUT");
        }
        else
        {
            v.DefinedEnum("action", request.Action);
        }
        var reason = Error(v, "reason", request.Reason);
        Guid? checkpoint = string.IsNullOrEmpty(request.ResumeCheckpointId) ? null : v.Uuid("resume_checkpoint_id", request.ResumeCheckpointId);
        v.ThrowIfAny();
        return new RecoveryRequest(id, request.FencingToken, request.Action == RecoveryAction.DeadLetter ? RecoveryKind.DeadLetter : RecoveryKind.Requeue,
            reason!, checkpoint, request.CountRetry);
    }

    public static TaskFilter Filter(Violations v, string listing, V1.TaskStatus status, string type, string workerId, int pageSize, string pageToken,
        string workflowId = "")
    {
        if (!string.IsNullOrEmpty(workflowId))
        {
            WorkflowId(v, "workflow_id", workflowId);
        }
        v.DefinedEnum("status", status);
        if (!string.IsNullOrEmpty(type))
        {
            TaskType(v, "type", type);
        }
        WorkerId(v, "worker_id", workerId, required: false);
        var size = v.PageSize("page_size", pageSize, 50, 1000);
        PageCursor? after = null;
        PageTokens.TryRead(v, pageToken, token => (after = PageCursor.TryDecode(listing, token)) is not null);
        var stored = status == V1.TaskStatus.Unspecified || !System.Enum.IsDefined(status) ? null : TaskState.FromProto(status);
        return new TaskFilter(stored, string.IsNullOrEmpty(type) ? null : type, string.IsNullOrEmpty(workerId) ? null : workerId, size, after,
            string.IsNullOrEmpty(workflowId) ? null : workflowId);
    }

    public static WatchFilter Watch(WatchTasksRequest request)
    {
        RepeatedFields.ThrowIfCountOutside("task_types", request.TaskTypes.Count, MaxWatchedTypes, items: "task types");
        RepeatedFields.ThrowIfCountOutside("event_types", request.EventTypes.Count, MaxWatchedTypes, items: "event types");
        var v = new Violations();
        RepeatedFields.CheckItems(v, "task_types", request.TaskTypes.Count, (v, i) => TaskType(v, $"task_types[{i}]", request.TaskTypes[i]));
        Guid? taskId = string.IsNullOrEmpty(request.TaskId) ? null : v.Uuid("task_id", request.TaskId);
        RepeatedFields.CheckItems(v, "event_types", request.EventTypes.Count, (v, i) =>
            v.AddIf(!EventTypes.Contains(request.EventTypes[i]), $"event_types[{i}]", $"'{Violations.Truncate(request.EventTypes[i], 64)}' is not an event type"));
        var after = v.Position("after_event_id", request.AfterEventId);
        v.ThrowIfAny();
        return new WatchFilter(request.TaskTypes.ToArray(), taskId, request.EventTypes.ToArray(), after);
    }
}
