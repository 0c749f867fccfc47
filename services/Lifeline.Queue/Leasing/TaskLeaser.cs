using System.Diagnostics;
using Lifeline.Queue.Data;
using Lifeline.Queue.Domain;
using Lifeline.Queue.Events;
using Lifeline.Queue.Options;
using Lifeline.ServiceDefaults.Postgres;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Lifeline.Queue.Telemetry;
using Lifeline.ServiceDefaults.Telemetry;

namespace Lifeline.Queue.Leasing;

/// <summary>A validated LeaseTasks request.</summary>
public sealed record LeaseRequest(string WorkerId, string[] TaskTypes, int MaxTasks, TimeSpan LeaseDuration, TimeSpan Wait, bool Start = false);

/// <summary>
/// Hands ready tasks to workers, through group commit: the lease attempts that arrive together (one alone when it
/// arrives alone) are applied in one transaction of two statements. The first locks enough ready tasks for all of
/// them: for each wanted (tenant, type) it walks <c>ix_tasks_ready</c> in dequeue order (priority desc, created_at,
/// id) with <c>FOR UPDATE SKIP LOCKED</c>, so any number of workers and service instances lease at once and no task
/// is ever leased twice. Each request is then given, in arrival order, the best of those among its own tenant and
/// types; the second statement leases them all, with their history rows, each leased task's fencing token one larger,
/// and goes with the COMMIT in one round trip.
/// (A single CTE statement that picked and leased at once was the path of a lone attempt; on the hot path's generic
/// plans it took 42 ms per call in a 100,000-task table, pg_stat_statements showed, against about 2 ms for these two.)
/// </summary>
public sealed class TaskLeaser
{
    private readonly NpgsqlDataSource dataSource;
    private readonly ReadySignal readySignal;
    private readonly WorkerGate gate;
    private readonly IOptions<QueueOptions> options;
    private readonly QueueTelemetry telemetry;
    private readonly GroupCommit<(string Tenant, LeaseRequest Request), IReadOnlyList<TaskRecord>> attempts;

    public TaskLeaser([FromKeyedServices(ServiceDataSource.HotPathKey)] NpgsqlDataSource dataSource, ReadySignal readySignal, WorkerGate gate, IOptions<QueueOptions> options,
        QueueTelemetry telemetry)
    {
        this.telemetry = telemetry;
        this.dataSource = dataSource;
        this.readySignal = readySignal;
        this.gate = gate;
        this.options = options;
        attempts = new(ApplyAttemptsAsync, options.Value.GroupCommitPolicy);
    }

    /// <summary>
    /// Leases up to <see cref="LeaseRequest.MaxTasks"/> ready tasks, waiting up to <see cref="LeaseRequest.Wait"/> for
    /// some; its span (when traced) links to the enqueue of every task leased.
    /// </summary>
    public async Task<IReadOnlyList<TaskRecord>> LeaseAsync(string tenant, LeaseRequest request, CancellationToken cancellationToken)
    {
        using var activity = QueueTelemetry.Source.StartActivity("queue.lease");
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag(TaskTrace.TenantTag, tenant);
            activity.SetTag(TaskTrace.WorkerIdTag, request.WorkerId);
        }
        var leased = await LeaseWithinWaitAsync(tenant, request, cancellationToken);
        QueueTelemetry.LinkAll(activity, leased);
        return leased;
    }

    private async Task<IReadOnlyList<TaskRecord>> LeaseWithinWaitAsync(string tenant, LeaseRequest request, CancellationToken cancellationToken)
    {
        request = request with { TaskTypes = await gate.AdmitAsync(tenant, request) };
        var deadline = Stopwatch.GetTimestamp() + (long)(request.Wait.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            // Watched before the attempt (when it may wait): tasks that become ready after its snapshot end the wait at once.
            ReadySignal.Watch? watch = request.Wait > TimeSpan.Zero ? readySignal.Observe(tenant) : null;
            var leased = await attempts.RunAsync((tenant, request), cancellationToken);
            var remaining = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), deadline);
            if (leased.Count > 0 || remaining <= TimeSpan.Zero)
            {
                return leased;
            }
            var nap = remaining < options.Value.LeasePollInterval ? remaining : options.Value.LeasePollInterval;
            await ReadySignal.WaitAsync(watch!.Value, nap, cancellationToken);
        }
    }

    private async Task<IReadOnlyList<GroupOutcome<IReadOnlyList<TaskRecord>>>> ApplyAttemptsAsync(
        IReadOnlyList<(string Tenant, LeaseRequest Request)> group, CancellationToken cancellationToken)
    {
        var leased = await SerializationRetry.RunAsync(async ct =>
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var tx = await connection.BeginTransactionAsync(ct);
            var lease = new GroupLease(group);
            await lease.LockAsync(connection, tx, ct);
            return await lease.LeaseAndCommitAsync(connection, tx, ct);
        }, cancellationToken);
        Committed(leased);
        return leased.Select(GroupOutcome<IReadOnlyList<TaskRecord>>.Of).ToList();
    }

    /// <summary>Counts what a committed transaction leased (after <see cref="GroupLease.LeaseAndCommitAsync"/>).</summary>
    internal void Committed(IEnumerable<IReadOnlyList<TaskRecord>> leased)
    {
        foreach (var tasks in leased)
        {
            foreach (var task in tasks)
            {
                telemetry.Leased(task);
            }
        }
    }

    // Locks up to `limit` ready tasks of each wanted (tenant, type), best first, skipping rows other leases hold.
    private static readonly string LockCandidatesSql = $"""
        SELECT c.id, w.tenant, w.type, c.priority, c.created_at
        FROM unnest(@tenants::text[], @types::text[], @limits::int[]) AS w(tenant, type, lim)
        CROSS JOIN LATERAL (
            SELECT t.id, t.priority, t.created_at
            FROM tasks t
            WHERE t.tenant_id = w.tenant AND t.type = w.type AND {TaskLifecycle.Lease.FromGuard("t.status")}
              AND t.unmet_dependencies = 0 AND t.not_before <= now()
            ORDER BY t.priority DESC, t.created_at, t.id
            LIMIT w.lim
            FOR UPDATE SKIP LOCKED
        ) c
        """;

    private static readonly string LeaseChosenSql = $"""
        WITH input AS (
            SELECT * FROM unnest(@ids::uuid[], @workers::text[], @lease_seconds::float8[], @starts::bool[]) AS i(id, worker, lease_seconds, start)
        ), leased AS (
            UPDATE tasks t
            SET status = CASE WHEN i.start THEN {TaskState.Sql(TaskState.Running)} ELSE {TaskState.Sql(TaskState.Assigned)} END, assigned_worker_id = i.worker,
                fencing_token = t.fencing_token + 1, lease_seconds = i.lease_seconds,
                lease_expires_at = now() + make_interval(secs => i.lease_seconds), assigned_at = now(),
                started_at = CASE WHEN i.start THEN now() END,
                deadline_at = CASE WHEN i.start THEN now() + make_interval(secs => t.timeout_seconds) END,
                progress_percent = 0, progress_message = NULL, updated_at = now()
            FROM input i
            WHERE t.id = i.id AND {TaskLifecycle.Lease.FromGuard("t.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}, i.start AS in_start, i.lease_seconds AS in_lease_seconds
        ), history AS (
            {History.InsertFrom("leased", "leased", TaskState.Sql(TaskState.Pending), "status",
                details: "jsonb_build_object('wait_ms', floor(extract(epoch FROM now() - not_before) * 1000)::bigint, 'lease_seconds', in_lease_seconds, 'started', in_start)")}
        )
        SELECT {TaskRecord.Columns} FROM leased
        """;

    private sealed record Candidate(Guid Id, int Priority, DateTime CreatedAt);

    /// <summary>
    /// One group's lease (requests already admitted) in the caller's transaction, as steps a caller can put in its own
    /// round trips: <see cref="LockCandidates"/> locks enough candidates for all of them (a statement to batch with others;
    /// <see cref="ReadCandidatesAsync"/> reads its rows and gives each request, in arrival order, the best of its own
    /// tenant and types), then <see cref="LeaseAndCommitAsync"/> leases the chosen ones and commits in the same round
    /// trip; candidates no request took are unlocked at commit, untouched. The caller then calls <see cref="Committed"/>.
    /// Locking again in the same transaction (after a statement made more tasks ready) returns the rows already locked
    /// with the new ones, and the choice is made again from all of them.
    /// </summary>
    internal sealed class GroupLease
    {
        private readonly IReadOnlyList<(string Tenant, LeaseRequest Request)> group;
        private readonly Dictionary<(string Tenant, string Type), int> wanted = [];
        private readonly List<(int Request, Candidate Task)> chosen = [];

        public GroupLease(IReadOnlyList<(string Tenant, LeaseRequest Request)> group)
        {
            this.group = group;
            foreach (var (tenant, request) in group)
            {
                foreach (var type in request.TaskTypes.Distinct())
                {
                    wanted[(tenant, type)] = wanted.GetValueOrDefault((tenant, type)) + request.MaxTasks;
                }
            }
        }

        /// <summary>The statement that locks enough ready tasks for every request of the group.</summary>
        public NpgsqlBatchCommand LockCandidates()
        {
            var keys = wanted.Keys.ToArray();
            var command = new NpgsqlBatchCommand(LockCandidatesSql);
            command.Parameters.AddWithValue("tenants", keys.Select(k => k.Tenant).ToArray());
            command.Parameters.AddWithValue("types", keys.Select(k => k.Type).ToArray());
            command.Parameters.AddWithValue("limits", keys.Select(k => wanted[k]).ToArray());
            return command;
        }

        /// <summary>Reads the rows of <see cref="LockCandidates"/> (the reader is on its result) and chooses each request's tasks.</summary>
        public async Task ReadCandidatesAsync(NpgsqlDataReader reader, CancellationToken ct)
        {
            var candidates = new Dictionary<(string Tenant, string Type), List<Candidate>>();
            while (await reader.ReadAsync(ct))
            {
                var key = (reader.GetString(1), reader.GetString(2));
                if (!candidates.TryGetValue(key, out var list))
                {
                    candidates[key] = list = [];
                }
                list.Add(new Candidate(reader.GetGuid(0), reader.GetInt32(3), reader.GetDateTime(4)));
            }
            chosen.Clear();
            var taken = new HashSet<Guid>();
            for (var r = 0; r < group.Count; r++)
            {
                var (tenant, request) = group[r];
                var best = request.TaskTypes.Distinct()
                    .SelectMany(type => candidates.GetValueOrDefault((tenant, type)) ?? [])
                    .Where(c => !taken.Contains(c.Id))
                    .OrderByDescending(c => c.Priority).ThenBy(c => c.CreatedAt).ThenBy(c => c.Id)
                    .Take(request.MaxTasks);
                foreach (var c in best)
                {
                    taken.Add(c.Id);
                    chosen.Add((r, c));
                }
            }
        }

        /// <summary>Locks the candidates in a round trip of its own.</summary>
        public async Task LockAsync(NpgsqlConnection connection, NpgsqlTransaction tx, CancellationToken ct)
        {
            await using var batch = Batch(connection, tx, LockCandidates());
            await using var reader = await batch.ExecuteReaderAsync(ct);
            await ReadCandidatesAsync(reader, ct);
        }

        /// <summary>Leases the chosen tasks and commits the transaction, in one round trip.</summary>
        public async Task<IReadOnlyList<IReadOnlyList<TaskRecord>>> LeaseAndCommitAsync(NpgsqlConnection connection, NpgsqlTransaction tx,
            CancellationToken ct)
        {
            var results = group.Select(_ => new List<TaskRecord>()).ToArray();
            if (chosen.Count > 0)
            {
                var requestOf = chosen.ToDictionary(c => c.Task.Id, c => c.Request);
                var lease = new NpgsqlBatchCommand(LeaseChosenSql);
                lease.Parameters.AddWithValue("ids", chosen.Select(c => c.Task.Id).ToArray());
                lease.Parameters.AddWithValue("workers", chosen.Select(c => group[c.Request].Request.WorkerId).ToArray());
                lease.Parameters.AddWithValue("lease_seconds", chosen.Select(c => group[c.Request].Request.LeaseDuration.TotalSeconds).ToArray());
                lease.Parameters.AddWithValue("starts", chosen.Select(c => group[c.Request].Request.Start).ToArray());
                await using var batch = Batch(connection, tx, lease, CommitStatement());
                await using var reader = await batch.ExecuteReaderAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    var record = TaskRecord.Read(reader);
                    results[requestOf[record.Id]].Add(record);
                }
            }
            else
            {
                await tx.CommitAsync(ct);
            }
            return results.Select(r => (IReadOnlyList<TaskRecord>)r.OrderByDescending(t => t.Priority).ThenBy(t => t.CreatedAt).ThenBy(t => t.Id).ToList())
                .ToList();
        }
    }

    /// <summary>A batch of the given statements (nulls left out) in the transaction: one round trip.</summary>
    internal static NpgsqlBatch Batch(NpgsqlConnection connection, NpgsqlTransaction tx, params NpgsqlBatchCommand?[] commands)
    {
        var batch = new NpgsqlBatch(connection, tx);
        foreach (var command in commands)
        {
            if (command is not null)
            {
                batch.BatchCommands.Add(command);
            }
        }
        return batch;
    }

    /// <summary>
    /// The transaction's COMMIT as the last statement of a batch, so that its last statement and its commit share a
    /// round trip. A statement before it that fails aborts the transaction: PostgreSQL skips the rest of the batch (and a
    /// COMMIT of an aborted transaction would only roll it back), the batch throws, nothing is committed, and the
    /// transaction's dispose finds it over. A COMMIT that itself fails throws as <see cref="NpgsqlTransaction.CommitAsync"/>
    /// would. (CommitStatementTests pins both.)
    /// </summary>
    internal static NpgsqlBatchCommand CommitStatement() => new("COMMIT");
}
