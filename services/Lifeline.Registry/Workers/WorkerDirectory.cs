using Lifeline.Registry.Breakers;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Options;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.ServiceDefaults.Tenancy;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Registry.Workers;

/// <summary>A validated registration.</summary>
public sealed record Registration(string Name, string Type, string[] Capabilities, string MetadataJson);

/// <summary>
/// Worker life-cycle changes. Each is one PostgreSQL transaction that changes the worker and writes its
/// event (the WatchWorkers log) together, guarded on the current state so that it happens once even with
/// several registry instances; the Redis mirror is updated after commit.
/// </summary>
public sealed class WorkerDirectory(NpgsqlDataSource dataSource, RedisMirror mirror, IOptions<RegistryOptions> options,
    Lifeline.Registry.Telemetry.RegistryTelemetry telemetry)
{
    private static string EventFrom(string source, string eventType, string message, string running = "running_task_ids") => $"""
        INSERT INTO worker_events (tenant_id, worker_id, worker_name, event_type, session_epoch, running_task_ids, message)
        SELECT tenant_id, id, name, '{eventType}', session_epoch, {running}, {message} FROM {source}
        """;

    private static readonly string RegisterSql = $"""
        WITH up AS (
            INSERT INTO workers (id, tenant_id, name, type, status, capabilities, metadata, running_task_ids, session_epoch,
                                 registered_at, updated_at, last_heartbeat_at)
            VALUES (@id, @tenant, @name, @type, 'online', @capabilities, @metadata::jsonb, '{"{}"}', 1, now(), now(), now())
            ON CONFLICT (tenant_id, name) DO UPDATE
            SET session_epoch = workers.session_epoch + 1, status = 'online', capabilities = EXCLUDED.capabilities,
                metadata = EXCLUDED.metadata, running_task_ids = '{"{}"}', deregistered_at = NULL, updated_at = now(),
                last_heartbeat_at = now()
            WHERE workers.type = EXCLUDED.type
            RETURNING {WorkerRecord.Columns}, (xmax = 0) AS created
        ), event AS (
            {EventFrom("up", "registered", "CASE WHEN created THEN 'registered' ELSE 'registered again: session ' || session_epoch END")}
        ), breaker AS (
            INSERT INTO circuit_breakers (worker_id, tenant_id, state, consecutive_failures, failure_threshold, updated_at)
            SELECT id, tenant_id, 'closed', 0, @threshold, now() FROM up
            ON CONFLICT (worker_id) DO NOTHING
        )
        -- The breaker inserted above is not visible here; a worker registering again sees its existing one.
        SELECT {WorkerRecord.ColumnsOf("up")}, up.created, b.state, b.consecutive_failures, b.reset_at, b.opened_at
        FROM up LEFT JOIN circuit_breakers b ON b.worker_id = up.id
        """;

    /// <summary>Every tenant with registered (not deregistered) workers, in byte order.</summary>
    public Task<IReadOnlyList<string>> ActiveTenantsAsync(CancellationToken ct) =>
        ActiveTenants.ListAsync(dataSource, "workers", "x.deregistered_at IS NULL", ct);

    /// <summary>Registers a worker, idempotently by name: the same id, a new session epoch.</summary>
    public async Task<(WorkerRecord Worker, bool Created)> RegisterAsync(string tenant, Registration registration, CancellationToken cancellationToken)
    {
        var (worker, created, breaker) = await SerializationRetry.RunAsync(async ct =>
        {
            // A data-source command owns its connection until the command itself is disposed: disposing only the
            // reader and running another statement inside the same scope let the pool hand that connection to two
            // callers at once ("A command is already in progress", calls that never got an answer). Close the
            // scope before the next statement.
            await using (var command = dataSource.CreateCommand(RegisterSql))
            {
                command.Parameters.AddWithValue("id", Guid.CreateVersion7());
                command.Parameters.AddWithValue("tenant", tenant);
                command.Parameters.AddWithValue("name", registration.Name);
                command.Parameters.AddWithValue("type", registration.Type);
                command.Parameters.AddWithValue("capabilities", registration.Capabilities);
                command.Parameters.AddWithValue("metadata", registration.MetadataJson);
                command.Parameters.AddWithValue("threshold", options.Value.BreakerFailureThreshold);
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    var breaker = reader.IsDBNull(WorkerRecord.ColumnCount + 1)
                        ? BreakerState.Initial
                        : new BreakerState(reader.GetString(WorkerRecord.ColumnCount + 1), reader.GetInt32(WorkerRecord.ColumnCount + 2),
                            reader.IsDBNull(WorkerRecord.ColumnCount + 3) ? null : reader.GetDateTime(WorkerRecord.ColumnCount + 3),
                            reader.IsDBNull(WorkerRecord.ColumnCount + 4) ? null : reader.GetDateTime(WorkerRecord.ColumnCount + 4));
                    return (WorkerRecord.Read(reader), reader.GetBoolean(WorkerRecord.ColumnCount), breaker);
                }
            }
            var existing = await FindByNameAsync(tenant, registration.Name, ct);
            throw new PreconditionFailedException("WORKER_TYPE_MISMATCH",
                $"Worker '{registration.Name}' is registered as {existing?.Type}; it cannot register again as {registration.Type}.")
            {
                Metadata = { ["worker_id"] = existing?.Id.ToString() ?? "", ["registered_type"] = existing?.Type ?? "" },
            };
        }, cancellationToken);
        await mirror.WriteWorkerAsync(worker, breaker, alive: true);
        return (worker, created);
    }

    private static readonly string DeregisterSql = $"""
        WITH changed AS (
            UPDATE workers SET status = 'offline', deregistered_at = now(), updated_at = now(), running_task_ids = '{"{}"}'
            WHERE id = @id AND tenant_id = @tenant AND deregistered_at IS NULL
            RETURNING {WorkerRecord.Columns}
        ), event AS (
            {EventFrom("changed", "deregistered", "'deregistered'")}
        )
        SELECT {WorkerRecord.Columns} FROM changed
        """;

    public async Task<WorkerRecord> DeregisterAsync(string tenant, Guid id, CancellationToken ct)
    {
        var changed = await SingleAsync(DeregisterSql, tenant, id, p => { }, ct);
        if (changed is null)
        {
            // Already deregistered: asking again changes nothing.
            return await GetAsync(tenant, id, ct);
        }
        await mirror.MarkDeregisteredAsync(tenant, id);
        return changed;
    }

    private static readonly string DrainSql = $"""
        WITH changed AS (
            UPDATE workers SET status = 'draining', updated_at = now()
            WHERE id = @id AND tenant_id = @tenant AND deregistered_at IS NULL AND status <> 'draining'
            RETURNING {WorkerRecord.Columns}
        ), event AS (
            {EventFrom("changed", "draining", "@reason")}
        )
        SELECT {WorkerRecord.Columns} FROM changed
        """;

    public async Task<WorkerRecord> DrainAsync(string tenant, Guid id, string reason, CancellationToken ct)
    {
        var changed = await SingleAsync(DrainSql, tenant, id, p => p.AddWithValue("reason", reason), ct);
        if (changed is null)
        {
            var current = await GetAsync(tenant, id, ct);
            if (current.DeregisteredAt is not null)
            {
                throw new PreconditionFailedException("WORKER_DEREGISTERED", $"Worker {id} is deregistered; it cannot be drained.");
            }
            return current; // already draining
        }
        await mirror.SetStatusAsync(tenant, id, "draining");
        await mirror.PushCommandAsync(tenant, id, new WorkerCommand { Drain = new DrainCommand { Reason = reason } });
        return changed;
    }

    private static readonly string LostSql = $"""
        WITH changed AS (
            UPDATE workers SET status = 'offline', updated_at = now(),
                running_task_ids = CASE WHEN cardinality(@running::text[]) > 0 THEN @running ELSE running_task_ids END
            WHERE id = @id AND tenant_id = @tenant AND deregistered_at IS NULL AND status <> 'offline'
            RETURNING {WorkerRecord.Columns}
        ), event AS (
            {EventFrom("changed", "lost", "'heartbeat lapsed'")}
        )
        SELECT {WorkerRecord.Columns} FROM changed
        """;

    /// <summary>
    /// Marks a worker lost, once: only the transition to offline writes the event. <see cref="LostMarking.Unknown"/>
    /// when PostgreSQL has no such worker (its database was restored from before the worker registered).
    /// </summary>
    public async Task<LostMarking> MarkLostAsync(string tenant, Guid id, string[] running, CancellationToken ct)
    {
        var (changed, known) = await ChangeAsync(LostSql, tenant, id, p => p.AddWithValue("running", running), ct);
        if (changed is not null)
        {
            // Committed: the detection time runs from the last heartbeat PostgreSQL recorded (flushed every HeartbeatFlushInterval).
            telemetry.Lost(tenant, id, changed.LastHeartbeatAt, DateTime.UtcNow);
        }
        return changed is not null ? LostMarking.Marked : known ? LostMarking.Unchanged : LostMarking.Unknown;
    }

    private static readonly string RecoveredSql = $"""
        WITH changed AS (
            UPDATE workers SET status = 'online', updated_at = now(), last_heartbeat_at = now()
            WHERE id = @id AND tenant_id = @tenant AND deregistered_at IS NULL AND status = 'offline'
            RETURNING {WorkerRecord.Columns}
        ), event AS (
            {EventFrom("changed", "recovered", "'heartbeats again'")}
        )
        SELECT {WorkerRecord.Columns} FROM changed
        """;

    /// <summary>Marks a lost worker back online, once.</summary>
    public async Task<WorkerRecord?> MarkRecoveredAsync(string tenant, Guid id, CancellationToken ct) =>
        await SingleAsync(RecoveredSql, tenant, id, _ => { }, ct);

    public async Task<WorkerRecord> GetAsync(string tenant, Guid id, CancellationToken ct) =>
        await FindAsync(tenant, id, ct) ?? throw new NotFoundException("worker", id.ToString());

    public async Task<WorkerRecord?> FindAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"SELECT {WorkerRecord.Columns} FROM workers WHERE id = @id AND tenant_id = @tenant");
        command.Parameters.AddWithValue("id", id);
        command.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? WorkerRecord.Read(reader) : null;
    }

    private async Task<WorkerRecord?> FindByNameAsync(string tenant, string name, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"SELECT {WorkerRecord.Columns} FROM workers WHERE name = @name AND tenant_id = @tenant");
        command.Parameters.AddWithValue("name", name);
        command.Parameters.AddWithValue("tenant", tenant);
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? WorkerRecord.Read(reader) : null;
    }

    /// <summary>Workers by name, after <paramref name="afterName"/>, filtered.</summary>
    public async Task<(IReadOnlyList<WorkerRecord> Workers, string? NextName)> ListAsync(
        string tenant, string? status, string? capability, string? type, int pageSize, string? afterName, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand($"""
            SELECT {WorkerRecord.Columns} FROM workers
            WHERE tenant_id = @tenant
              AND (@status::text IS NULL OR status = @status)
              AND (@capability::text IS NULL OR @capability = ANY(capabilities))
              AND (@type::text IS NULL OR type = @type)
              AND (@after::text IS NULL OR name > @after)
            ORDER BY name LIMIT @limit
            """);
        command.Parameters.AddWithValue("tenant", tenant);
        command.Parameters.Add(new NpgsqlParameter("status", NpgsqlDbType.Text) { Value = (object?)status ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("capability", NpgsqlDbType.Text) { Value = (object?)capability ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("type", NpgsqlDbType.Text) { Value = (object?)type ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("after", NpgsqlDbType.Text) { Value = (object?)afterName ?? DBNull.Value });
        command.Parameters.AddWithValue("limit", pageSize + 1);
        var workers = new List<WorkerRecord>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            workers.Add(WorkerRecord.Read(reader));
        }
        if (workers.Count <= pageSize)
        {
            return (workers, null);
        }
        workers.RemoveAt(workers.Count - 1);
        return (workers, workers[^1].Name);
    }

    /// <summary>The worker as changed by <paramref name="sql"/>, null when the guard left it alone; NOT_FOUND when there is no such worker.</summary>
    private async Task<WorkerRecord?> SingleAsync(string sql, string tenant, Guid id, Action<NpgsqlParameterCollection> parameters, CancellationToken ct)
    {
        var (changed, known) = await ChangeAsync(sql, tenant, id, parameters, ct);
        return known ? changed : throw new NotFoundException("worker", id.ToString());
    }

    private async Task<(WorkerRecord? Changed, bool Known)> ChangeAsync(
        string sql, string tenant, Guid id, Action<NpgsqlParameterCollection> parameters, CancellationToken cancellationToken) =>
        await SerializationRetry.RunAsync(async ct =>
        {
            // The statement's connection goes back to the pool (command and reader disposed) before the
            // lookup below takes one: see RegisterAsync.
            await using (var command = dataSource.CreateCommand(sql))
            {
                command.Parameters.AddWithValue("id", id);
                command.Parameters.AddWithValue("tenant", tenant);
                parameters(command.Parameters);
                await using var reader = await command.ExecuteReaderAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    return (WorkerRecord.Read(reader), true);
                }
            }
            return ((WorkerRecord?)null, await FindAsync(tenant, id, ct) is not null);
        }, cancellationToken);
}

/// <summary>What <see cref="WorkerDirectory.MarkLostAsync"/> did.</summary>
public enum LostMarking
{
    /// <summary>The worker went offline and its <c>lost</c> event was written.</summary>
    Marked,

    /// <summary>Already offline or deregistered: nothing changed.</summary>
    Unchanged,

    /// <summary>PostgreSQL has no such worker.</summary>
    Unknown,
}
