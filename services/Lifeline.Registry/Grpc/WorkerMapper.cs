using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Registry.Breakers;
using Lifeline.Registry.Data;
using Lifeline.Registry.Events;
using Lifeline.Registry.Stats;
using Lifeline.Registry.V1;
using Lifeline.Registry.Workers;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Registry.Grpc;

/// <summary>Stored records ↔ contract messages, and the stored names of contract enums.</summary>
internal static class WorkerMapper
{
    private static readonly JsonFormatter MetadataFormatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(false));

    public static string MetadataToJson(WorkerMetadata? metadata) => MetadataFormatter.Format(metadata ?? new WorkerMetadata());

    public static WorkerMetadata MetadataFromJson(string json) => JsonParser.Default.Parse<WorkerMetadata>(json);

    public static string TypeName(WorkerType type) => type switch
    {
        WorkerType.Orchestrator => "orchestrator",
        WorkerType.Standalone => "standalone",
        WorkerType.CiCd => "ci_cd",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    public static WorkerType ParseType(string name) => name switch
    {
        "orchestrator" => WorkerType.Orchestrator,
        "standalone" => WorkerType.Standalone,
        "ci_cd" => WorkerType.CiCd,
        _ => WorkerType.Unspecified,
    };

    public static string StatusName(WorkerStatus status) => status switch
    {
        WorkerStatus.Online => "online",
        WorkerStatus.Busy => "busy",
        WorkerStatus.Draining => "draining",
        WorkerStatus.Offline => "offline",
        WorkerStatus.Error => "error",
        _ => throw new ArgumentOutOfRangeException(nameof(status)),
    };

    public static WorkerStatus ParseStatus(string name) => name switch
    {
        "online" => WorkerStatus.Online,
        "busy" => WorkerStatus.Busy,
        "draining" => WorkerStatus.Draining,
        "offline" => WorkerStatus.Offline,
        "error" => WorkerStatus.Error,
        _ => WorkerStatus.Unspecified,
    };

    public static string CircuitName(CircuitState state) => state switch
    {
        CircuitState.Closed => BreakerState.Closed,
        CircuitState.Open => BreakerState.Open,
        CircuitState.HalfOpen => BreakerState.HalfOpen,
        _ => throw new ArgumentOutOfRangeException(nameof(state)),
    };

    public static CircuitState ParseCircuit(string name) => name switch
    {
        BreakerState.Open => CircuitState.Open,
        BreakerState.HalfOpen => CircuitState.HalfOpen,
        _ => CircuitState.Closed,
    };

    public static string EventName(WorkerEventType type) => type switch
    {
        WorkerEventType.Registered => "registered",
        WorkerEventType.Lost => "lost",
        WorkerEventType.Recovered => "recovered",
        WorkerEventType.Draining => "draining",
        WorkerEventType.Deregistered => "deregistered",
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    private static WorkerEventType ParseEvent(string name) => name switch
    {
        "registered" => WorkerEventType.Registered,
        "lost" => WorkerEventType.Lost,
        "recovered" => WorkerEventType.Recovered,
        "draining" => WorkerEventType.Draining,
        "deregistered" => WorkerEventType.Deregistered,
        _ => WorkerEventType.Unspecified,
    };

    /// <summary>A worker; live fields (status, running tasks, load, last beat) from Redis override the coalesced copy.</summary>
    public static Worker ToProto(this WorkerRecord w, (string Status, string[] Running, double Load, DateTime BeatAt)? live = null)
    {
        var worker = new Worker
        {
            Id = w.Id.ToString(),
            TenantId = w.TenantId,
            Name = w.Name,
            Type = ParseType(w.Type),
            Status = ParseStatus(w.Status),
            Metadata = MetadataFromJson(w.Metadata),
            SessionEpoch = w.SessionEpoch,
            RegisteredAt = Time(w.RegisteredAt),
            UpdatedAt = Time(w.UpdatedAt),
            Load = w.Load,
        };
        worker.Capabilities.AddRange(w.Capabilities);
        worker.RunningTaskIds.AddRange(w.RunningTaskIds);
        if (w.LastHeartbeatAt is { } beat)
        {
            worker.LastHeartbeatAt = Time(beat);
        }
        if (w.DeregisteredAt is { } gone)
        {
            worker.DeregisteredAt = Time(gone);
        }
        if (live is { } l && w.DeregisteredAt is null)
        {
            worker.Status = ParseStatus(l.Status);
            worker.RunningTaskIds.Clear();
            worker.RunningTaskIds.AddRange(l.Running);
            worker.Load = l.Load;
            worker.LastHeartbeatAt = Time(l.BeatAt);
        }
        return worker;
    }

    public static WorkerEvent ToProto(this WorkerEventRecord e)
    {
        var proto = new WorkerEvent
        {
            EventId = e.Position.ToString(),
            Type = ParseEvent(e.EventType),
            WorkerId = e.WorkerId.ToString(),
            WorkerName = e.WorkerName,
            SessionEpoch = e.SessionEpoch,
            Message = e.Message ?? "",
            OccurredAt = Time(e.OccurredAt),
        };
        proto.RunningTaskIds.AddRange(e.RunningTaskIds);
        return proto;
    }

    public static WorkerStats ToProto(this StatsRecord s) => new()
    {
        WorkerId = s.WorkerId.ToString(),
        WorkerName = s.WorkerName,
        Total = s.Total,
        Succeeded = s.Succeeded,
        Failed = s.Failed,
        SuccessRate = s.SuccessRate,
        MeanDuration = Duration.FromTimeSpan(s.MeanDuration),
        ConsecutiveFailures = s.ConsecutiveFailures,
        LastOutcomeAt = s.LastOutcomeAt is { } at ? Time(at) : null,
    };

    public static CircuitBreaker ToProto(this CircuitBreakerEntity b)
    {
        var effective = CircuitBreakerPolicy.Effective(BreakerStore.ToState(b), DateTime.UtcNow);
        return new CircuitBreaker
        {
            WorkerId = b.WorkerId.ToString(),
            State = ParseCircuit(effective.State),
            ConsecutiveFailures = effective.ConsecutiveFailures,
            FailureThreshold = b.FailureThreshold,
            ResetAt = effective.ResetAt is { } r ? Time(r) : null,
            OpenedAt = effective.OpenedAt is { } o ? Time(o) : null,
            UpdatedAt = Time(b.UpdatedAt),
        };
    }

}
