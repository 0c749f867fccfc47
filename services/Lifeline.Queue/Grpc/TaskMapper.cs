using Google.Protobuf.WellKnownTypes;
using Lifeline.Common.V1;
using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Reading;
using Lifeline.Queue.V1;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Queue.Grpc;

/// <summary>Stored records → contract messages.</summary>
internal static class TaskMapper
{
    public static V1.Task ToProto(this TaskRecord r)
    {
        var task = new V1.Task
        {
            Id = r.Id.ToString(),
            TenantId = r.TenantId,
            Type = r.Type,
            Status = TaskState.ToProto(r.Status),
            Priority = r.Priority,
            Payload = r.Payload,
            Result = r.Result ?? "",
            AssignedWorkerId = r.AssignedWorkerId ?? "",
            FencingToken = r.FencingToken,
            CreatedAt = Time(r.CreatedAt),
            UpdatedAt = Time(r.UpdatedAt),
            RetryCount = r.RetryCount,
            MaxRetries = r.MaxRetries,
            TimeoutSeconds = r.TimeoutSeconds,
            NotBefore = Time(r.NotBefore),
            IdempotencyKey = r.IdempotencyKey ?? "",
            RetryPolicy = new RetryPolicy
            {
                Backoff = RetrySchedule.ParseStrategy(r.Backoff),
                InitialInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(r.InitialIntervalMs)),
                MaximumInterval = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(r.MaximumIntervalMs)),
                Jitter = r.Jitter,
            },
            UnmetDependencies = r.UnmetDependencies,
            ProgressPercent = r.ProgressPercent,
            ProgressMessage = r.ProgressMessage ?? "",
            WorkflowId = r.WorkflowId ?? "",
            ResumeCheckpointId = r.ResumeCheckpointId?.ToString() ?? "",
            RecoveryCount = r.RecoveryCount,
        };
        if (r.Error is { } e)
        {
            task.Error = ToProto(e);
        }
        if (r.LeaseExpiresAt is { } lease)
        {
            task.LeaseExpiresAt = Time(lease);
        }
        if (r.AssignedAt is { } assigned)
        {
            task.AssignedAt = Time(assigned);
        }
        if (r.StartedAt is { } started)
        {
            task.StartedAt = Time(started);
        }
        if (r.CompletedAt is { } completed)
        {
            task.CompletedAt = Time(completed);
        }
        if (r.DeadLetteredAt is { } dead)
        {
            task.DeadLetteredAt = Time(dead);
        }
        return task;
    }

    public static ErrorDetail ToProto(StoredError e)
    {
        var detail = new ErrorDetail { Code = e.Code, Message = e.Message ?? "", Retryable = e.Retryable, Severity = ParseSeverity(e.Severity) };
        if (e.Details is not null)
        {
            detail.Details.Add(e.Details);
        }
        return detail;
    }

    public static TaskEvent ToProto(this TaskEventRecord e)
    {
        var proto = new TaskEvent
        {
            EventId = $"{e.Xid}-{e.Id}",
            TaskId = e.TaskId.ToString(),
            TaskType = e.TaskType,
            EventType = e.EventType,
            FromStatus = e.FromStatus is null ? V1.TaskStatus.Unspecified : TaskState.ToProto(e.FromStatus),
            ToStatus = TaskState.ToProto(e.ToStatus),
            WorkerId = e.WorkerId ?? "",
            FencingToken = e.FencingToken ?? 0,
            Message = e.Message ?? "",
            OccurredAt = Time(e.OccurredAt),
        };
        if (e.Details is not null)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(e.Details);
            foreach (var property in doc.RootElement.EnumerateObject())
            {
                proto.Details[property.Name] = property.Value.ValueKind == System.Text.Json.JsonValueKind.String
                    ? property.Value.GetString()!
                    : property.Value.GetRawText();
            }
        }
        return proto;
    }

    public static string SeverityName(Severity severity) => severity switch
    {
        Severity.Low => "low",
        Severity.High => "high",
        Severity.Critical => "critical",
        _ => "medium",
    };

    private static Severity ParseSeverity(string? name) => name switch
    {
        "low" => Severity.Low,
        "high" => Severity.High,
        "critical" => Severity.Critical,
        _ => Severity.Medium,
    };

}
