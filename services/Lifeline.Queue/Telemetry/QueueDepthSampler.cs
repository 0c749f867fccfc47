using System.Diagnostics.Metrics;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Telemetry;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Queue.Telemetry;

/// <summary>
/// The last sample of the ready backlog by task type, read by the depth and oldest-age gauges. A scrape reads what is
/// here and never queries: scrapes cannot pile up queries on a slow database. A type that drained reports 0 (and age 0)
/// until the service restarts, so a graph drops to zero instead of ending.
/// </summary>
public sealed class QueueDepthSnapshot
{
    private volatile Measurement<long>[] _depths = [];
    private volatile Measurement<double>[] _ages = [];
    private readonly Dictionary<string, KeyValuePair<string, object?>[]> _tags = new(StringComparer.Ordinal);

    public IEnumerable<Measurement<long>> Depths() => _depths;

    public IEnumerable<Measurement<double>> OldestAges() => _ages;

    /// <summary>When the last sample was taken (null before the first).</summary>
    public DateTime? SampledAt { get; private set; }

    /// <summary>Replaces the sample (one writer: the sampler).</summary>
    public void Update(IReadOnlyList<(string Type, long Depth, double OldestAgeSeconds)> rows, int maxTypes)
    {
        var present = new HashSet<string>(StringComparer.Ordinal);
        var depths = new List<Measurement<long>>(rows.Count);
        var ages = new List<Measurement<double>>(rows.Count);
        foreach (var (type, depth, age) in rows)
        {
            present.Add(type);
            var tags = TagsOf(type, maxTypes);
            if (tags is not null)
            {
                depths.Add(new Measurement<long>(depth, tags));
                ages.Add(new Measurement<double>(age, tags));
            }
        }
        foreach (var (type, tags) in _tags)
        {
            if (!present.Contains(type))
            {
                depths.Add(new Measurement<long>(0, tags));
                ages.Add(new Measurement<double>(0, tags));
            }
        }
        _depths = [.. depths];
        _ages = [.. ages];
        SampledAt = DateTime.UtcNow;
    }

    private KeyValuePair<string, object?>[]? TagsOf(string type, int maxTypes)
    {
        if (!_tags.TryGetValue(type, out var tags))
        {
            if (_tags.Count >= maxTypes)
            {
                return null;
            }
            _tags[type] = tags = [new(TaskTrace.TaskTypeTag, type)];
        }
        return tags;
    }
}

/// <summary>
/// Refreshes <see cref="QueueDepthSnapshot"/> every <see cref="QueueOptions.DepthSampleInterval"/> with one statement whose
/// cost is bounded whatever the backlog: it walks the distinct (tenant, type) pairs of the ready index
/// <c>ix_tasks_ready</c> (one index probe each, at most <see cref="QueueOptions.DepthMaxTypes"/> × 10 pairs), and for each
/// reads at most <see cref="QueueOptions.DepthCountLimit"/> ready tasks in dequeue order. The depth of a type is the sum
/// over its tenants, each counted up to the limit; the age is that of the longest-waiting task among those read (the
/// head of the line and the tasks behind it). No sequential scan, no count over a million rows. Every instance samples
/// the same table: take the max over instances in a query.
/// </summary>
public sealed class QueueDepthSampler(NpgsqlDataSource dataSource, QueueDepthSnapshot snapshot, IOptions<QueueOptions> options,
    ILogger<QueueDepthSampler> logger) : BackgroundLoop(logger, LoopBackoff.Between(options.Value.DepthSampleInterval, TimeSpan.FromMinutes(1)))
{
    private static readonly string DepthSql = $"""
        WITH RECURSIVE pairs AS (
            (SELECT tenant_id, type, 1 AS n FROM tasks
             WHERE status = {TaskState.Sql(TaskState.Pending)} AND unmet_dependencies = 0
             ORDER BY tenant_id, type LIMIT 1)
            UNION ALL
            SELECT next.tenant_id, next.type, p.n + 1
            FROM pairs p
            CROSS JOIN LATERAL (
                SELECT t.tenant_id, t.type FROM tasks t
                WHERE t.status = {TaskState.Sql(TaskState.Pending)} AND t.unmet_dependencies = 0 AND (t.tenant_id, t.type) > (p.tenant_id, p.type)
                ORDER BY t.tenant_id, t.type LIMIT 1
            ) next
            WHERE p.n < @max_pairs
        )
        SELECT p.type, sum(head.ready)::bigint, COALESCE(max(head.age), 0)::float8
        FROM pairs p
        CROSS JOIN LATERAL (
            SELECT count(*) AS ready, extract(epoch FROM now() - min(line.not_before)) AS age
            FROM (
                SELECT t.not_before FROM tasks t
                WHERE t.tenant_id = p.tenant_id AND t.type = p.type AND t.status = {TaskState.Sql(TaskState.Pending)} AND t.unmet_dependencies = 0
                  AND t.not_before <= now()
                ORDER BY t.priority DESC, t.created_at, t.id
                LIMIT @count_limit
            ) line
        ) head
        WHERE head.ready > 0
        GROUP BY p.type
        ORDER BY 2 DESC
        LIMIT @max_types
        """;

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        await SampleAsync(stoppingToken);
        return options.Value.DepthSampleInterval;
    }

    /// <summary>Takes one sample now.</summary>
    public async Task SampleAsync(CancellationToken cancellationToken)
    {
        var rows = new List<(string, long, double)>();
        await using (var command = dataSource.CreateCommand(DepthSql))
        {
            command.Parameters.AddWithValue("max_types", options.Value.DepthMaxTypes);
            command.Parameters.AddWithValue("max_pairs", options.Value.DepthMaxTypes * 10);
            command.Parameters.AddWithValue("count_limit", options.Value.DepthCountLimit);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((reader.GetString(0), reader.GetInt64(1), Math.Max(0, reader.GetDouble(2))));
            }
        }
        snapshot.Update(rows, options.Value.DepthMaxTypes);
    }
}
