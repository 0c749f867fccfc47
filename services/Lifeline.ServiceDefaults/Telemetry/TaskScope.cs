using System.Collections;

namespace Lifeline.ServiceDefaults.Telemetry;

/// <summary>
/// A log scope naming the tenant, task and worker a message is about (<c>logger.BeginScope(new TaskScope(...))</c>):
/// structured key/value pairs, so OTLP log records carry them as attributes (IncludeScopes) and console loggers print
/// them. Trace and span ids are added to every scope by the logging's activity tracking. Absent values are left out.
/// </summary>
public sealed class TaskScope(string? tenant, Guid? taskId = null, string? workerId = null) : IReadOnlyList<KeyValuePair<string, object?>>
{
    private readonly KeyValuePair<string, object?>[] _pairs = Build(tenant, taskId, workerId);

    private static KeyValuePair<string, object?>[] Build(string? tenant, Guid? taskId, string? workerId)
    {
        var pairs = new List<KeyValuePair<string, object?>>(3);
        if (tenant is not null)
        {
            pairs.Add(new(TaskTrace.TenantTag, tenant));
        }
        if (taskId is { } id && id != Guid.Empty)
        {
            pairs.Add(new(TaskTrace.TaskIdTag, id.ToString()));
        }
        if (!string.IsNullOrEmpty(workerId))
        {
            pairs.Add(new(TaskTrace.WorkerIdTag, workerId));
        }
        return [.. pairs];
    }

    public KeyValuePair<string, object?> this[int index] => _pairs[index];

    public int Count => _pairs.Length;

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => ((IEnumerable<KeyValuePair<string, object?>>)_pairs).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => string.Join(", ", _pairs.Select(p => $"{p.Key}={p.Value}"));
}
