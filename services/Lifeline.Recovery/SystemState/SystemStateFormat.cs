using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.V1;
using static Lifeline.ServiceDefaults.Protobuf.ProtoTime;

namespace Lifeline.Recovery.SystemState;

/// <summary>A worker as recorded in a snapshot's pool (so a restore can tell which ones went away).</summary>
public sealed record PooledWorker(string Tenant, string Id, string Name, string Status);

/// <summary>The worker pool of a snapshot: counts by status, and the workers counted.</summary>
public sealed record WorkerPool(long Total, long Online, long Busy, long Draining, long Offline, IReadOnlyList<PooledWorker> Workers)
{
    public static readonly WorkerPool Empty = new(0, 0, 0, 0, 0, []);

    public bool SameCounts(WorkerPool other) =>
        Total == other.Total && Online == other.Online && Busy == other.Busy && Draining == other.Draining && Offline == other.Offline;

    public static WorkerPool Of(IReadOnlyList<PooledWorker> workers) => new(
        workers.Count, workers.Count(w => w.Status == "online"), workers.Count(w => w.Status == "busy"),
        workers.Count(w => w.Status == "draining"), workers.Count(w => w.Status == "offline"), workers);
}

/// <summary>What a snapshot holds, in memory.</summary>
public sealed record StateContent(
    SystemStatus Status, string Version, WorkerPool Pool, IReadOnlyDictionary<string, long> QueueCounts,
    IReadOnlyDictionary<string, double> Metrics, IReadOnlyDictionary<string, string> Configuration);

/// <summary>
/// The persisted format of a snapshot (the JSON columns of <c>system_states</c>) and its validation at
/// restore. The format is versioned <c>MAJOR.MINOR.PATCH</c>: a minor or patch change only adds fields a
/// reader may ignore; a different major version is not read at all.
/// </summary>
public static partial class SystemStateFormat
{
    /// <summary>The format this service writes and reads.</summary>
    public const string CurrentVersion = "1.0.0";

    public const int CurrentMajor = 1;

    private static readonly string[] PoolFields = ["total", "online", "busy", "draining", "offline"];

    [GeneratedRegex(@"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")]
    private static partial Regex SemVer();

    public static string PoolJson(WorkerPool pool)
    {
        var workers = new JsonArray();
        foreach (var w in pool.Workers)
        {
            workers.Add(new JsonObject { ["tenant"] = w.Tenant, ["id"] = w.Id, ["name"] = w.Name, ["status"] = w.Status });
        }
        return new JsonObject
        {
            ["total"] = pool.Total, ["online"] = pool.Online, ["busy"] = pool.Busy, ["draining"] = pool.Draining, ["offline"] = pool.Offline,
            ["workers"] = workers,
        }.ToJsonString();
    }

    public static string Json<T>(IReadOnlyDictionary<string, T> values) => JsonSerializer.Serialize(values);

    /// <summary>
    /// Reads a persisted snapshot for a restore: every required field present and well-formed, and a format
    /// of this major version. Returns null with the reason for refusing otherwise.
    /// </summary>
    public static StateContent? Validate(SystemStateEntity row, out string refusal)
    {
        refusal = "";
        string Refuse(string why) => $"persisted state {row.Id} of {row.CreatedAt:O} {why} — refusing to restore";
        if (string.IsNullOrWhiteSpace(row.Version))
        {
            refusal = Refuse("has no format version");
            return null;
        }
        var version = SemVer().Match(row.Version);
        if (!version.Success)
        {
            refusal = Refuse($"has format version '{Truncate(row.Version)}', which is not MAJOR.MINOR.PATCH");
            return null;
        }
        var major = int.Parse(version.Groups[1].Value, CultureInfo.InvariantCulture);
        if (major != CurrentMajor)
        {
            refusal = $"persisted state has format version {row.Version}; this service reads major version {CurrentMajor} — refusing to restore";
            return null;
        }
        if (row.Status is < 1 or > 5)
        {
            refusal = Refuse($"has status {row.Status}, which is not a SystemStatus");
            return null;
        }
        var problems = new List<string>();
        var pool = ReadPool(row.WorkerPool, problems);
        var counts = ReadObject(row.QueueCounts, "queue_counts", problems, (JsonNode n, out long v) => TryInteger(n, out v));
        var metrics = ReadObject(row.Metrics, "metrics", problems, (JsonNode n, out double v) => TryNumber(n, out v));
        var configuration = ReadObject(row.Configuration, "configuration", problems, (JsonNode n, out string v) =>
        {
            v = n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : "";
            return n.GetValueKind() == JsonValueKind.String;
        });
        if (string.IsNullOrWhiteSpace(row.Reason))
        {
            problems.Add("is missing reason");
        }
        if (problems.Count > 0)
        {
            refusal = Refuse(string.Join("; ", problems));
            return null;
        }
        return new StateContent((SystemStatus)row.Status, row.Version, pool!, counts!, metrics!, configuration!);
    }

    private delegate bool TryValue<T>(JsonNode node, out T value);

    private static Dictionary<string, T>? ReadObject<T>(string? json, string field, List<string> problems, TryValue<T> read)
    {
        if (Parse(json, field, problems) is not JsonObject obj)
        {
            return null;
        }
        var values = new Dictionary<string, T>(StringComparer.Ordinal);
        foreach (var (key, node) in obj)
        {
            if (node is null || !read(node, out var value))
            {
                problems.Add($"has a malformed {field}.{key}");
                continue;
            }
            values[key] = value;
        }
        return values;
    }

    private static WorkerPool? ReadPool(string? json, List<string> problems)
    {
        if (Parse(json, "worker_pool", problems) is not JsonObject obj)
        {
            return null;
        }
        var counts = new long[PoolFields.Length];
        for (var i = 0; i < PoolFields.Length; i++)
        {
            if (obj[PoolFields[i]] is not { } node)
            {
                problems.Add($"is missing worker_pool.{PoolFields[i]}");
            }
            else if (!TryInteger(node, out counts[i]) || counts[i] < 0)
            {
                problems.Add($"has a malformed worker_pool.{PoolFields[i]} (a count)");
            }
        }
        var workers = new List<PooledWorker>();
        switch (obj["workers"])
        {
            case null:
                break;
            case JsonArray array:
                foreach (var item in array)
                {
                    if (item is JsonObject w && Text(w, "tenant") is { Length: > 0 } tenant && Text(w, "id") is { Length: > 0 } id)
                    {
                        workers.Add(new PooledWorker(tenant, id, Text(w, "name") ?? "", Text(w, "status") ?? ""));
                    }
                    else
                    {
                        problems.Add("has a worker_pool.workers entry without tenant and id");
                        break;
                    }
                }
                break;
            default:
                problems.Add("has a malformed worker_pool.workers (an array)");
                break;
        }
        return new WorkerPool(counts[0], counts[1], counts[2], counts[3], counts[4], workers);
    }

    private static JsonNode? Parse(string? json, string field, List<string> problems)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            problems.Add($"is missing {field}");
            return null;
        }
        try
        {
            var node = JsonNode.Parse(json);
            if (node is not JsonObject)
            {
                problems.Add($"has a {field} that is not a JSON object");
                return null;
            }
            return node;
        }
        catch (JsonException)
        {
            problems.Add($"has a {field} that is not well-formed JSON");
            return null;
        }
    }

    private static string? Text(JsonObject obj, string name) =>
        obj[name] is { } n && n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : null;

    private static bool TryInteger(JsonNode node, out long value)
    {
        value = 0;
        return node.GetValueKind() == JsonValueKind.Number && node.AsValue().TryGetValue(out value);
    }

    private static bool TryNumber(JsonNode node, out double value)
    {
        value = 0;
        return node.GetValueKind() == JsonValueKind.Number
            && double.TryParse(node.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }

    private static string Truncate(string value) => value.Length <= 64 ? value : value[..64] + "…";

    /// <summary>The contract's view of a stored snapshot. Lenient: a row that would not restore is still shown as it is.</summary>
    public static V1.SystemState ToProto(SystemStateEntity row)
    {
        var state = new V1.SystemState
        {
            Id = row.Id.ToString(),
            Status = row.Status is >= 1 and <= 5 ? (SystemStatus)row.Status : SystemStatus.Unspecified,
            Version = row.Version,
            CreatedAt = Time(row.CreatedAt),
            Reason = row.Reason,
            Message = row.Message,
            WorkerPool = new WorkerPoolSummary(),
        };
        var problems = new List<string>();
        if (ReadPool(row.WorkerPool, problems) is { } pool)
        {
            state.WorkerPool = new WorkerPoolSummary { Total = pool.Total, Online = pool.Online, Busy = pool.Busy, Draining = pool.Draining, Offline = pool.Offline };
        }
        foreach (var (k, v) in ReadObject(row.QueueCounts, "queue_counts", problems, (JsonNode n, out long x) => TryInteger(n, out x)) ?? [])
        {
            state.QueueCounts[k] = v;
        }
        foreach (var (k, v) in ReadObject(row.Metrics, "metrics", problems, (JsonNode n, out double x) => TryNumber(n, out x)) ?? [])
        {
            state.Metrics[k] = v;
        }
        foreach (var (k, v) in ReadObject(row.Configuration, "configuration", problems, (JsonNode n, out string x) =>
                 {
                     x = n.GetValueKind() == JsonValueKind.String ? n.GetValue<string>() : n.ToJsonString();
                     return true;
                 }) ?? [])
        {
            state.Configuration[k] = v;
        }
        return state;
    }
}
