using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lifeline.Worker.Internal;

/// <summary>What a journal entry keeps.</summary>
internal enum JournalEntryKind
{
    /// <summary>A completion: <see cref="JournalEntry.Result"/>.</summary>
    Complete = 0,

    /// <summary>A failure: <see cref="JournalEntry.Error"/> and maybe <see cref="JournalEntry.RetryAfter"/>.</summary>
    Fail = 1,

    /// <summary>The task's latest progress, kept with its outcome: <see cref="JournalEntry.Progress"/>.</summary>
    Progress = 2,
}

/// <summary>A failure as journaled: the contract's <c>ErrorDetail</c> fields a handler sets.</summary>
internal sealed record JournalError(string Code, string Message, bool Retryable, IReadOnlyDictionary<string, string> Details);

/// <summary>Progress as journaled.</summary>
internal sealed record JournalProgress(int Percent, string Message);

/// <summary>
/// One line of the offline journal (JSON):
/// <c>{"seq":N,"kind":"complete"|"fail"|"progress","task_id":"…","fencing_token":"…","result"|"error"|"progress":…,"at":"RFC 3339"}</c>.
/// A completion's <c>result</c> is the result's JSON value (null for none); a failure's <c>error</c> is
/// <c>{"code","message","retryable","details","retry_after_ms"?}</c> (the last when the handler asked for one);
/// progress is <c>{"percent","message"}</c>. Fencing tokens are strings (int64).
/// </summary>
internal sealed record JournalEntry(
    long Seq,
    JournalEntryKind Kind,
    string TaskId,
    long FencingToken,
    DateTimeOffset At,
    string? Result = null,
    JournalError? Error = null,
    TimeSpan? RetryAfter = null,
    JournalProgress? Progress = null)
{
    /// <summary>A completion with <paramref name="result"/> (JSON text or null), not yet numbered.</summary>
    public static JournalEntry Completion(string taskId, long fencingToken, string? result, DateTimeOffset at) =>
        new(0, JournalEntryKind.Complete, taskId, fencingToken, at, Result: result);

    /// <summary>A failure, not yet numbered.</summary>
    public static JournalEntry Failure(string taskId, long fencingToken, JournalError error, TimeSpan? retryAfter, DateTimeOffset at) =>
        new(0, JournalEntryKind.Fail, taskId, fencingToken, at, Error: error, RetryAfter: retryAfter);

    /// <summary>Progress, not yet numbered.</summary>
    public static JournalEntry ProgressReport(string taskId, long fencingToken, JournalProgress progress, DateTimeOffset at) =>
        new(0, JournalEntryKind.Progress, taskId, fencingToken, at, Progress: progress);

    /// <summary>Whether this is an outcome (a completion or failure) rather than progress.</summary>
    public bool IsOutcome => Kind is JournalEntryKind.Complete or JournalEntryKind.Fail;

    /// <summary>The entry as one line of JSON (no newline).</summary>
    public string ToJsonLine()
    {
        var line = new JsonObject
        {
            ["seq"] = Seq,
            ["kind"] = Kind switch
            {
                JournalEntryKind.Complete => "complete",
                JournalEntryKind.Fail => "fail",
                _ => "progress",
            },
            ["task_id"] = TaskId,
            ["fencing_token"] = FencingToken.ToString(CultureInfo.InvariantCulture),
        };
        switch (Kind)
        {
            case JournalEntryKind.Complete:
                line["result"] = ResultNode(Result);
                break;
            case JournalEntryKind.Fail:
                var details = new JsonObject();
                foreach (var (key, value) in Error!.Details)
                {
                    details[key] = value;
                }

                var error = new JsonObject
                {
                    ["code"] = Error.Code,
                    ["message"] = Error.Message,
                    ["retryable"] = Error.Retryable,
                    ["details"] = details,
                };
                if (RetryAfter is { } retryAfter)
                {
                    error["retry_after_ms"] = (long)retryAfter.TotalMilliseconds;
                }

                line["error"] = error;

                break;
            case JournalEntryKind.Progress:
                line["progress"] = new JsonObject { ["percent"] = Progress!.Percent, ["message"] = Progress.Message };
                break;
        }

        line["at"] = At.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);
        return line.ToJsonString();
    }

    /// <summary>Reads one line; null when it is not a complete entry (e.g. the torn last line of a crash).</summary>
    public static JournalEntry? TryParse(string line)
    {
        try
        {
            if (JsonNode.Parse(line) is not JsonObject json)
            {
                return null;
            }

            var seq = Required(json, "seq").GetValue<long>();
            var taskId = Required(json, "task_id").GetValue<string>();
            var token = long.Parse(Required(json, "fencing_token").GetValue<string>(), NumberStyles.Integer, CultureInfo.InvariantCulture);
            var at = DateTimeOffset.Parse(Required(json, "at").GetValue<string>(), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal);
            switch (Required(json, "kind").GetValue<string>())
            {
                case "complete":
                    var result = json["result"];
                    return new JournalEntry(seq, JournalEntryKind.Complete, taskId, token, at, Result: result?.ToJsonString());
                case "fail":
                    var error = Required(json, "error").AsObject();
                    var details = new Dictionary<string, string>(StringComparer.Ordinal);
                    if (error["details"] is JsonObject detailObject)
                    {
                        foreach (var (key, value) in detailObject)
                        {
                            details[key] = value?.GetValue<string>() ?? "";
                        }
                    }

                    TimeSpan? retryAfter = (error["retry_after_ms"] ?? json["retry_after_ms"]) is { } ms ? TimeSpan.FromMilliseconds(ms.GetValue<long>()) : null;
                    return new JournalEntry(seq, JournalEntryKind.Fail, taskId, token, at,
                        Error: new JournalError(Required(error, "code").GetValue<string>(), error["message"]?.GetValue<string>() ?? "",
                            error["retryable"]?.GetValue<bool>() ?? false, details),
                        RetryAfter: retryAfter);
                case "progress":
                    var progress = Required(json, "progress").AsObject();
                    return new JournalEntry(seq, JournalEntryKind.Progress, taskId, token, at,
                        Progress: new JournalProgress(Required(progress, "percent").GetValue<int>(), progress["message"]?.GetValue<string>() ?? ""));
                default:
                    return null;
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException or FormatException or OverflowException)
        {
            return null;
        }
    }

    private static JsonNode Required(JsonObject json, string name) =>
        json[name] ?? throw new FormatException($"The journal entry has no '{name}'.");

    /// <summary>
    /// A result as a JSON value: parsed when it is JSON (the contract's case), kept as a JSON string otherwise (the queue
    /// would refuse it as it would have refused it live).
    /// </summary>
    private static JsonNode? ResultNode(string? result)
    {
        if (string.IsNullOrEmpty(result))
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(result);
        }
        catch (JsonException)
        {
            return JsonValue.Create(result);
        }
    }
}
