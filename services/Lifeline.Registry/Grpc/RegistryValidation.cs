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

    public const int MaxCapabilities = 100;
    public const int MaxRunningTasks = 1_000;
    public const int MaxFeatures = 64;
    public const int MaxTags = 64;
    public const int MaxTagKeyLength = 128;
    public const int MaxTagValueLength = 256;
    public const int MaxFeatureLength = 128;
    public const int MaxMetadataTextLength = 128;
    public const double MaxCpu = 1_000_000;

    public static Registration Registration(RegisterWorkerRequest request)
    {
        // Size before work: every repeated field's count first, before any item is looked at.
        RepeatedFields.ThrowIfCountOutside("capabilities", request.Capabilities.Count, MaxCapabilities, items: "task types");
        if (request.Metadata is { } counted)
        {
            RepeatedFields.ThrowIfCountOutside("metadata.special_features", counted.SpecialFeatures.Count, MaxFeatures, items: "features");
            RepeatedFields.ThrowIfCountOutside("metadata.tags", counted.Tags.Count, MaxTags, items: "tags");
        }
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
        RepeatedFields.CountWithin(v, "capabilities", request.Capabilities.Count, MaxCapabilities, min: 1, items: "task types");
        RepeatedFields.CheckItems(v, "capabilities", request.Capabilities.Count, (v, i) =>
            v.AddIf(!TaskTypePattern().IsMatch(request.Capabilities[i]), $"capabilities[{i}]",
                "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'"));
        if (request.Metadata is { } m)
        {
            Metadata(v, m);
        }
        v.ThrowIfAny();
        var type = WorkerMapper.TypeName(request.Type);
        return new Registration(request.Name, type, request.Capabilities.Distinct(StringComparer.Ordinal).ToArray(), WorkerMapper.MetadataToJson(request.Metadata));
    }

    /// <summary>A worker's metadata (stored as jsonb): every string bounded and without NUL, resources finite and not negative.</summary>
    private static void Metadata(Violations v, WorkerMetadata m)
    {
        v.Text("metadata.version", m.Version, MaxMetadataTextLength);
        if (m.Resources is { } r)
        {
            v.Finite("metadata.resources.cpu", r.Cpu, 0, MaxCpu);
            v.AddIf(r.MemoryMb < 0, "metadata.resources.memory_mb", $"must not be negative; got {r.MemoryMb}");
            v.AddIf(r.DiskMb < 0, "metadata.resources.disk_mb", $"must not be negative; got {r.DiskMb}");
        }
        v.AddIf(m.MaxConcurrentTasks < 0, "metadata.max_concurrent_tasks", $"must not be negative; got {m.MaxConcurrentTasks}");
        RepeatedFields.CheckItems(v, "metadata.special_features", m.SpecialFeatures.Count, (v, i) =>
            v.Text($"metadata.special_features[{i}]", m.SpecialFeatures[i], MaxFeatureLength, required: true));
        if (m.Location is { } location)
        {
            v.Text("metadata.location.region", location.Region, MaxMetadataTextLength);
            v.Text("metadata.location.zone", location.Zone, MaxMetadataTextLength);
        }
        var tags = m.Tags.ToList();
        RepeatedFields.CheckItems(v, "metadata.tags", tags.Count, (v, i) =>
        {
            var (key, value) = (tags[i].Key, tags[i].Value);
            // The key names the field only once it is known to be short and printable.
            var field = key.Length is > 0 and <= 64 && !key.Contains('\0', StringComparison.Ordinal) ? $"metadata.tags[{key}]" : $"metadata.tags (entry {i})";
            if (key.Length == 0 || key.Length > MaxTagKeyLength || key.Contains('\0', StringComparison.Ordinal))
            {
                v.Add(field, $"keys must be 1 to {MaxTagKeyLength} characters without NUL; got {key.Length} characters");
            }
            v.Text(field, value, MaxTagValueLength);
        });
    }

    public static HeartbeatInput Heartbeat(Violations v, HeartbeatRequest request, string prefix = "")
    {
        // Size before work: more running tasks than a heartbeat takes are refused before any id is parsed.
        RepeatedFields.ThrowIfCountOutside(prefix + "running_task_ids", request.RunningTaskIds.Count, MaxRunningTasks, items: "task ids");
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
        RepeatedFields.CheckItems(v, prefix + "running_task_ids", request.RunningTaskIds.Count, (v, i) =>
            v.Uuid($"{prefix}running_task_ids[{i}]", request.RunningTaskIds[i]));
        v.AddIf(double.IsNaN(request.Load) || request.Load is < 0 or > 1, prefix + "load", $"must be between 0 and 1; got {request.Load}");
        return new HeartbeatInput(id, request.SessionEpoch, status, request.RunningTaskIds.ToArray(), double.IsNaN(request.Load) ? 0 : request.Load);
    }

    private static readonly TimeSpan MaxOutcomeDuration = TimeSpan.FromDays(3653); // ten years: any run ends before

    public static Outcome Outcome(Violations v, string path, TaskOutcome? o)
    {
        if (o is null)
        {
            v.Add(path, "is required");
            return null!;
        }
        v.Text($"{path}.outcome_id", o.OutcomeId, 128, required: true);
        var worker = v.Uuid($"{path}.worker_id", o.WorkerId);
        var task = v.Uuid($"{path}.task_id", o.TaskId);
        v.AddIf(!TaskTypePattern().IsMatch(o.TaskType), $"{path}.task_type", "must be 1 to 128 characters of letters, digits, '.', '_', '-', ':' and '/'");
        var durationMs = (long)v.Duration($"{path}.duration", o.Duration, TimeSpan.Zero, MaxOutcomeDuration).TotalMilliseconds;
        v.Text($"{path}.error_code", o.ErrorCode, 128);
        var at = o.OccurredAt is null ? DateTime.UtcNow : v.Timestamp($"{path}.occurred_at", o.OccurredAt) ?? DateTime.UtcNow;
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
