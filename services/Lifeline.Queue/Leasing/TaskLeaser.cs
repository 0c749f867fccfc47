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
/// arrives alone) are applied in one transaction. Candidates are locked by walking, for each wanted (tenant, type),
/// <c>ix_tasks_ready</c> in dequeue order (priority desc, created_at, id) with <c>FOR UPDATE SKIP LOCKED</c>, so any
/// number of workers and service instances lease at once and no task is ever leased twice; the requests, in arrival
/// order, each take the best of those among their own tenant and types; the chosen tasks are leased with their history
/// rows, each leased task's fencing token one larger.
/// <para>
/// When all the group's requests want the same tenant and types (the usual group: the workers of one pool) that is one
/// statement — the candidates ranked in SQL fill the requests' slots — sent with BEGIN and COMMIT in one round trip.
/// Otherwise the service chooses: the lock in one round trip, the lease of the chosen tasks with the COMMIT in the next.
/// (An earlier single statement, <c>UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)</c>, took 42 ms per call in a
/// 100,000-task table on the hot path's generic plans; this one walks the candidates once, gives them their slots by
/// array subscript and reaches each task by its key, and ScaleTests holds it to a handful of index tuples per call over
/// a million tasks.)
/// </para>
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
            if (lease.ChoosesInSql)
            {
                // One round trip: BEGIN, the lock and lease of the best tasks, COMMIT.
                await using var batch = Batch(connection, tx, lease.LockAndLease(), CommitStatement());
                await using var reader = await batch.ExecuteReaderAsync(ct);
                var leased = await lease.ReadLeasedAsync(reader, ct);
                // Done reading: the COMMIT's own answer (an error, if it failed) comes with the reader's end.
                await reader.DisposeAsync();
                return leased;
            }
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

    // Up to `w.lim` ready tasks of each wanted (tenant, type) of `w`, best first, locked, skipping rows other leases hold.
    private static readonly string CandidatesSql = $"""
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

    private static readonly string LockCandidatesSql = $"SELECT c.id, w.tenant, w.type, c.priority, c.created_at {CandidatesSql}";

    // Leases the tasks of `input` (id, request, worker, lease_seconds, start), with their history rows; returns each
    // leased task with the index of the request it went to.
    private static string LeaseInputSql(string input) => $"""
        WITH {input}, leased AS (
            UPDATE tasks t
            SET status = CASE WHEN i.start THEN {TaskState.Sql(TaskState.Running)} ELSE {TaskState.Sql(TaskState.Assigned)} END, assigned_worker_id = i.worker,
                fencing_token = t.fencing_token + 1, lease_seconds = i.lease_seconds,
                lease_expires_at = now() + make_interval(secs => i.lease_seconds), assigned_at = now(),
                started_at = CASE WHEN i.start THEN now() END,
                deadline_at = CASE WHEN i.start THEN now() + make_interval(secs => t.timeout_seconds) END,
                progress_percent = 0, progress_message = NULL, updated_at = now()
            FROM input i
            -- Each task reached by its key, whatever the planner guesses of the input's size (a guess of thousands once
            -- joined the input to a sequential scan of tasks).
            WHERE t.id = ANY(ARRAY(SELECT id FROM input)) AND t.id = i.id AND {TaskLifecycle.Lease.FromGuard("t.status")}
            RETURNING {TaskRecord.ColumnsOf("t")}, i.start AS in_start, i.lease_seconds AS in_lease_seconds, i.request AS in_request
        ), history AS (
            {History.InsertFrom("leased", "leased", TaskState.Sql(TaskState.Pending), "status",
                details: "jsonb_build_object('wait_ms', floor(extract(epoch FROM now() - not_before) * 1000)::bigint, 'lease_seconds', in_lease_seconds, 'started', in_start)")}
        )
        SELECT {TaskRecord.Columns}, in_request FROM leased
        """;

    // The tasks the service chose from the locked candidates.
    private static readonly string LeaseChosenSql = LeaseInputSql("""
        input AS (
            SELECT * FROM unnest(@ids::uuid[], @requests::int[], @workers::text[], @lease_seconds::float8[], @starts::bool[])
                AS i(id, request, worker, lease_seconds, start)
        )
        """);

    // Locks the candidates and leases them in one statement, when every request of the group wants the same tenant and
    // types: the candidates, ranked in dequeue order, fill the requests' slots in arrival order (the k-th best takes the
    // k-th element of the slot arrays), as the service's own choice would. The slots are read by subscript, not joined:
    // with a join of the ranked candidates to the slots a group of 3,200 slots once took 0.8 s in the benchmark's batch
    // row (the plan was not captured; a nested loop rescanning the candidates — their index walk and locks — once per
    // slot fits it). Without the join the candidates can only be walked once.
    private static readonly string LockAndLeaseSql = LeaseInputSql($"""
        candidates AS (
            SELECT c.id, row_number() OVER (ORDER BY c.priority DESC, c.created_at, c.id)::int AS rank
            {CandidatesSql}
        ), input AS (
            SELECT c.id, (@requests::int[])[c.rank] AS request, (@workers::text[])[c.rank] AS worker,
                   (@lease_seconds::float8[])[c.rank] AS lease_seconds, (@starts::bool[])[c.rank] AS start
            FROM candidates c
            WHERE c.rank <= cardinality(@requests::int[])
        )
        """);

    private sealed record Candidate(Guid Id, int Priority, DateTime CreatedAt);

    /// <summary>
    /// One group's lease (requests already admitted) in the caller's transaction, as statements a caller can put in its
    /// own round trips.
    /// <para>
    /// When every request wants the same tenant and types (<see cref="ChoosesInSql"/>: the workers of one pool, as on the
    /// dispatch stream), <see cref="LockAndLease"/> locks the candidates and leases them in one statement, the slots filled
    /// in arrival order in SQL, and <see cref="ReadLeasedAsync"/> reads what each request got; a caller batches it with
    /// its COMMIT, one round trip.
    /// </para>
    /// <para>
    /// Otherwise, <see cref="LockCandidates"/> locks enough candidates for all of them (<see cref="ReadCandidatesAsync"/>
    /// reads its rows and gives each request, in arrival order, the best of its own tenant and types), then
    /// <see cref="LeaseAndCommitAsync"/> leases the chosen ones and commits in the next round trip. Locking again in the
    /// same transaction (after a statement made more tasks ready) returns the rows already locked with the new ones, and
    /// the choice is made again from all of them.
    /// </para>
    /// Candidates no request took are unlocked at commit, untouched. The caller then calls <see cref="Committed"/>.
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
            var (firstTenant, first) = group[0];
            var types = first.TaskTypes.ToHashSet();
            ChoosesInSql = group.All(g => g.Tenant == firstTenant && types.SetEquals(g.Request.TaskTypes));
        }

        /// <summary>Every request wants the same tenant and types, so the candidates can fill the slots in SQL (<see cref="LockAndLease"/>).</summary>
        public bool ChoosesInSql { get; }

        /// <summary>The statement that locks enough ready tasks for every request of the group.</summary>
        public NpgsqlBatchCommand LockCandidates() => Wanted(new NpgsqlBatchCommand(LockCandidatesSql));

        /// <summary>
        /// The statement that locks the candidates and leases them, the best to the first request's slots (only when
        /// <see cref="ChoosesInSql"/>); its rows are read by <see cref="ReadLeasedAsync"/>.
        /// </summary>
        public NpgsqlBatchCommand LockAndLease()
        {
            if (!ChoosesInSql)
            {
                throw new InvalidOperationException("The requests want different tenants or types: the service chooses their tasks.");
            }
            var slots = Enumerable.Range(0, group.Count).SelectMany(r => Enumerable.Repeat(r, group[r].Request.MaxTasks)).ToArray();
            return Slots(Wanted(new NpgsqlBatchCommand(LockAndLeaseSql)), slots);
        }

        private NpgsqlBatchCommand Wanted(NpgsqlBatchCommand command)
        {
            var keys = wanted.Keys.ToArray();
            command.Parameters.AddWithValue("tenants", keys.Select(k => k.Tenant).ToArray());
            command.Parameters.AddWithValue("types", keys.Select(k => k.Type).ToArray());
            command.Parameters.AddWithValue("limits", keys.Select(k => wanted[k]).ToArray());
            return command;
        }

        // Each slot (or chosen task) as the request it serves: its index, worker, lease and whether it starts at once.
        private NpgsqlBatchCommand Slots(NpgsqlBatchCommand command, int[] requests)
        {
            command.Parameters.AddWithValue("requests", requests);
            command.Parameters.AddWithValue("workers", requests.Select(r => group[r].Request.WorkerId).ToArray());
            command.Parameters.AddWithValue("lease_seconds", requests.Select(r => group[r].Request.LeaseDuration.TotalSeconds).ToArray());
            command.Parameters.AddWithValue("starts", requests.Select(r => group[r].Request.Start).ToArray());
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
            if (chosen.Count == 0)
            {
                await tx.CommitAsync(ct);
                return group.Select(_ => (IReadOnlyList<TaskRecord>)[]).ToList();
            }
            var lease = Slots(new NpgsqlBatchCommand(LeaseChosenSql), chosen.Select(c => c.Request).ToArray());
            lease.Parameters.AddWithValue("ids", chosen.Select(c => c.Task.Id).ToArray());
            await using var batch = Batch(connection, tx, lease, CommitStatement());
            await using var reader = await batch.ExecuteReaderAsync(ct);
            return await ReadLeasedAsync(reader, ct);
        }

        /// <summary>
        /// Reads what a lease statement leased (the reader is on its result): each request's tasks, best first. The
        /// transaction has not committed yet unless the COMMIT was batched after it and the reader is done.
        /// </summary>
        public async Task<IReadOnlyList<IReadOnlyList<TaskRecord>>> ReadLeasedAsync(NpgsqlDataReader reader, CancellationToken ct)
        {
            var results = group.Select(_ => new List<TaskRecord>()).ToArray();
            while (await reader.ReadAsync(ct))
            {
                results[reader.GetInt32(TaskRecord.ColumnCount)].Add(TaskRecord.Read(reader));
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
