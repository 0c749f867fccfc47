using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Stats;
using Lifeline.Registry.V1;
using Lifeline.Registry.Workers;
using Lifeline.ServiceDefaults.Validation;

namespace Lifeline.Registry.Grpc;

/// <summary>Contract requests → validated domain requests; every violation of a request is reported together.</summary>
internal static partial class RegistryValidation
{
    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9._:/-]{1,128}$")]
    private static partial Regex TaskTypePattern();

    public static Registration Registration(RegisterWorkerRequest request)
    {
        var v = new Violations();
        if (string.IsNullOrEmpty(request.Name))
        {
            v.Add("name", "is required");
        }
        else if (!NamePattern().IsMatch(request.Name))
        {
            v.Add("name", "must be 1 to 128 characters of letters, digits, '.', '_' and '-'");
        }
        if (request.Type == WorkerType.Unspecified)
        {
            v.Add("type", "is required: WORKER_TYPE_ORCHESTRATOR, WORKER_TYPE_STANDALONE or WORKER_TYPE_CI_CD");
        }
        else
        {
            v.DefinedEnum("type", request.Type);
        }
        if (request.Capabilities.Count is 0 or > 100)
        {
            v.Add("capabilities", $"must list 1 to 100 task types; got {request.Capabilities.Count}");
        }
        for (var i = 0; i < request.Capabilities.Count && i < 100; i++)
        {
            v.AddIf(!TaskTypePattern().IsMatch(request.Capabilities[i]), $"capabilities[{i}]",
                "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'");
        }
        var m = request.Metadata;
        if (m is not null)
        {
            if (m.Resources is { } r)
            {
                v.AddIf(double.IsNaN(r.Cpu) || r.Cpu < 0, "metadata.resources.cpu", $"must not be negative; got {r.Cpu}");
                v.AddIf(r.MemoryMb < 0, "metadata.resources.memory_mb", $"must not be negative; got {r.MemoryMb}");
                v.AddIf(r.DiskMb < 0, "metadata.resources.disk_mb", $"must not be negative; got {r.DiskMb}");
            }
            v.AddIf(m.MaxConcurrentTasks < 0, "metadata.max_concurrent_tasks", $"must not be negative; got {m.MaxConcurrentTasks}");
            v.AddIf(m.Tags.Count > 64, "metadata.tags", "must have at most 64 entries");
            v.AddIf(m.SpecialFeatures.Count > 64, "metadata.special_features", "must have at most 64 entries");
            v.AddIf(m.Version.Length > 128, "metadata.version", "must be at most 128 characters");
        }
        v.ThrowIfAny();
        var type = WorkerMapper.TypeName(request.Type);
        return new Registration(request.Name, type, request.Capabilities.Distinct(StringComparer.Ordinal).ToArray(), WorkerMapper.MetadataToJson(m));
    }

    public static HeartbeatInput Heartbeat(Violations v, HeartbeatRequest request, string prefix = "")
    {
        var id = v.Uuid(prefix + "worker_id", request.WorkerId);
        v.AddIf(request.SessionEpoch <= 0, prefix + "session_epoch", "is required: the session epoch returned by RegisterWorker");
        string? status = null;
        switch (request.Status)
        {
            case WorkerStatus.Unspecified:
                break;
            case WorkerStatus.Online or WorkerStatus.Busy or WorkerStatus.Error:
                status = WorkerMapper.StatusName(request.Status);
                break;
            default:
                v.Add(prefix + "status", System.Enum.IsDefined(request.Status)
                    ? "a heartbeat reports ONLINE, BUSY or ERROR (draining is set by DrainWorker)"
                    : $"{(int)request.Status} is not a known WorkerStatus value");
                break;
        }
        v.AddIf(request.RunningTaskIds.Count > 1000, prefix + "running_task_ids", "must list at most 1000 tasks");
        for (var i = 0; i < request.RunningTaskIds.Count && i < 1000; i++)
        {
            v.Uuid($"{prefix}running_task_ids[{i}]", request.RunningTaskIds[i]);
        }
        v.AddIf(double.IsNaN(request.Load) || request.Load is < 0 or > 1, prefix + "load", $"must be between 0 and 1; got {request.Load}");
        return new HeartbeatInput(id, request.SessionEpoch, status, request.RunningTaskIds.ToArray(), double.IsNaN(request.Load) ? 0 : request.Load);
    }

    public static Outcome Outcome(Violations v, string path, TaskOutcome? o)
    {
        if (o is null)
        {
            v.Add(path, "is required");
            return null!;
        }
        v.AddIf(o.OutcomeId.Length is 0 or > 128, $"{path}.outcome_id", "must be 1 to 128 characters");
        var worker = v.Uuid($"{path}.worker_id", o.WorkerId);
        var task = v.Uuid($"{path}.task_id", o.TaskId);
        v.AddIf(!TaskTypePattern().IsMatch(o.TaskType), $"{path}.task_type", "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'");
        var durationMs = 0L;
        if (o.Duration is not null)
        {
            if (o.Duration.Seconds < 0 || o.Duration.Nanos < 0 || o.Duration.Seconds > 315_576_000_000)
            {
                v.Add($"{path}.duration", "must be a non-negative duration");
            }
            else
            {
                durationMs = (long)o.Duration.ToTimeSpan().TotalMilliseconds;
            }
        }
        v.AddIf(o.ErrorCode.Length > 128, $"{path}.error_code", "must be at most 128 characters");
        var at = DateTime.UtcNow;
        if (o.OccurredAt is not null)
        {
            if (o.OccurredAt.Seconds is < 0 or > 253_402_300_799 || o.OccurredAt.Nanos is < 0 or >= 1_000_000_000)
            {
                v.Add($"{path}.occurred_at", "is not a valid timestamp");
            }
            else
            {
                at = o.OccurredAt.ToDateTime();
            }
        }
        return new Outcome(o.OutcomeId, worker, task, o.TaskType, o.Success, durationMs, string.IsNullOrEmpty(o.ErrorCode) ? null : o.ErrorCode, at);
    }

    public static Guid WorkerId(string value, string field = "worker_id")
    {
        var v = new Violations();
        var id = v.Uuid(field, value);
        v.ThrowIfAny();
        return id;
    }

    public static string? Capability(Violations v, string value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return null;
        }
        v.AddIf(!TaskTypePattern().IsMatch(value), "capability", "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'");
        return value;
    }
}
