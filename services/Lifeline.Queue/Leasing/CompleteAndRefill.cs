using System.Diagnostics;
using Lifeline.Queue.Data;
using Lifeline.Queue.Options;
using Lifeline.Queue.Telemetry;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.ServiceDefaults.Telemetry;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Queue.Leasing;

/// <summary>
/// What a completion with its refill did: the completion's answer (the task as it is now, or the refusal the unary
/// call would have thrown) and the tasks leased, started, for the slot it freed (none when nothing was ready).
/// </summary>
public sealed record RefillOutcome(TaskRecord? Completed, LifelineException? Refusal, IReadOnlyList<TaskRecord> Refill);

/// <summary>
/// A completion on a dispatch stream together with the lease of the slot it frees, in one transaction.
/// <para>
/// Through group commit like every holder call: the completions that arrive together are applied in one transaction —
/// the guarded completion of all of them (history rows, dependency resolution), then one lease for all their refills,
/// the same statements as <see cref="LeaseHolderOperations"/> and <see cref="TaskLeaser"/> run alone. A completion is
/// answered exactly as the unary call; a refill leases for the stream's worker as its lease would (admitted by the
/// worker gate before it is queued; a task a completed dependency made ready is leasable in the same transaction).
/// </para>
/// <para>
/// Against a completion transaction and then a lease transaction: one commit per task instead of two, and the slot is
/// filled when the completion commits instead of one transaction later. The transaction takes two round trips: BEGIN, the
/// completions and the lock of the refills' candidates in one batch; the lease of the chosen tasks and the COMMIT in the
/// other (more only to read refused calls' rows or resolve dependents, and then candidates are locked again). A refill
/// that fails with its group fails the completion's call with it, as a failed completion always did: nothing committed,
/// nothing leased.
/// </para>
/// </summary>
public sealed class CompleteAndRefill
{
    private readonly NpgsqlDataSource dataSource;
    private readonly LeaseHolderOperations holders;
    private readonly TaskLeaser leaser;
    private readonly GroupCommit<Item, RefillOutcome> group;

    private sealed record Item(HolderChange Completion, LeaseRequest? Refill, bool HadDependents);

    public CompleteAndRefill([FromKeyedServices(ServiceDataSource.HotPathKey)] NpgsqlDataSource dataSource, LeaseHolderOperations holders,
        TaskLeaser leaser, IOptions<QueueOptions> options)
    {
        this.dataSource = dataSource;
        this.holders = holders;
        this.leaser = leaser;
        group = new(ApplyAsync, options.Value.GroupCommitPolicy);
    }

    /// <summary>
    /// Completes the task and, when <paramref name="refill"/> is given (a request the worker gate admitted, for the
    /// slots the completion frees), leases and starts tasks for it in the same transaction. Throws only when the
    /// store fails; a refusal of the completion is in the outcome. <paramref name="hadDependents"/>: the task had
    /// dependents when it was leased (its completion resolves them, which takes the long way).
    /// </summary>
    public async Task<RefillOutcome> RunAsync(string tenant, CompleteCommand completion, LeaseRequest? refill, bool hadDependents, CancellationToken ct)
    {
        var started = DateTime.UtcNow;
        using var span = QueueTelemetry.StartTaskSpan("queue.complete", tenant, completion.TaskId);
        RefillOutcome outcome;
        try
        {
            outcome = await group.RunAsync(
                new Item(new HolderChange(tenant, completion.TaskId, completion.FencingToken, Result: completion.Result), refill, hadDependents), ct);
        }
        catch (Exception ex) when (span is not null)
        {
            QueueTelemetry.Refused(span, ex);
            throw;
        }
        if (span is not null)
        {
            if (outcome.Completed is { } task)
            {
                QueueTelemetry.Answered(span, task);
            }
            else
            {
                QueueTelemetry.Refused(span, outcome.Refusal!);
            }
        }
        if (refill is not null && outcome.Refill.Count > 0 && QueueTelemetry.Source.HasListeners())
        {
            // The refill's lease, as a span of its own (not of the completed task's story) linked to each task's enqueue.
            using var lease = QueueTelemetry.Source.StartActivity("queue.lease", ActivityKind.Internal, parentContext: default, startTime: started);
            if (lease is { IsAllDataRequested: true })
            {
                lease.SetTag(TaskTrace.TenantTag, tenant);
                lease.SetTag(TaskTrace.WorkerIdTag, refill.WorkerId);
            }
            QueueTelemetry.LinkAll(lease, outcome.Refill);
        }
        return outcome;
    }

    private async Task<IReadOnlyList<GroupOutcome<RefillOutcome>>> ApplyAsync(IReadOnlyList<Item> items, CancellationToken cancellationToken)
    {
        var refills = Enumerable.Range(0, items.Count).Where(i => items[i].Refill is not null).ToArray();
        var completions = items.Select(i => i.Completion).ToList();
        var lease = refills.Length > 0 ? new TaskLeaser.GroupLease(refills.Select(i => (items[i].Completion.Tenant, items[i].Refill!)).ToList()) : null;
        var (completed, leased) = await SerializationRetry.RunAsync(async ct =>
        {
            // One round trip unless the long way is known to be needed: refills that want different tenants or types, or
            // a completed task that had dependents when it was leased (one that gained them since stops the one trip).
            if (lease is not { ChoosesInSql: false } && !items.Any(i => i.HadDependents))
            {
                try
                {
                    return await InOneTripAsync(completions, lease, ct);
                }
                catch (PostgresException e) when (e.SqlState == LeaseHolderOperations.RequirementFailed)
                {
                    // A completion was refused, or its task has dependents: nothing committed; the long way reads and resolves them.
                    Interlocked.Increment(ref fallBacks);
                }
            }
            return await InTwoTripsAsync(completions, lease, ct);
        }, cancellationToken);
        holders.Committed(completed);
        leaser.Committed(leased);
        var refillOf = new IReadOnlyList<TaskRecord>[items.Count];
        for (var k = 0; k < refills.Length; k++)
        {
            refillOf[refills[k]] = leased[k];
        }
        return items.Select((_, i) =>
        {
            var answer = completed.Outcomes[i];
            var refill = refillOf[i] ?? [];
            return GroupOutcome<RefillOutcome>.Of(answer.Error is { } refusal
                ? new RefillOutcome(null, (LifelineException)refusal, refill)
                : new RefillOutcome(answer.Value, null, refill));
        }).ToList();
    }

    /// <summary>
    /// BEGIN, the completions, the requirement that each was applied plainly, the lock and lease of the refills' tasks and
    /// the COMMIT, in one round trip. Throws <see cref="PostgresException"/> with
    /// <see cref="LeaseHolderOperations.RequirementFailed"/> (nothing committed) when a completion needs the long way.
    /// </summary>
    private async Task<(LeaseHolderOperations.AppliedChanges, IReadOnlyList<IReadOnlyList<TaskRecord>>)> InOneTripAsync(
        List<HolderChange> completions, TaskLeaser.GroupLease? lease, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await using var batch = TaskLeaser.Batch(connection, tx, LeaseHolderOperations.CompleteStatement(completions),
            LeaseHolderOperations.CompletedPlainlyStatement(completions), lease?.LockAndLease(), TaskLeaser.CommitStatement());
        await using var reader = await batch.ExecuteReaderAsync(ct);
        var changed = await LeaseHolderOperations.ReadChangedAsync(reader, ct);
        await reader.NextResultAsync(ct); // the requirement's row: it held, or the batch threw here
        IReadOnlyList<IReadOnlyList<TaskRecord>> leased = [];
        if (lease is not null)
        {
            await reader.NextResultAsync(ct);
            leased = await lease.ReadLeasedAsync(reader, ct);
        }
        // Done reading: the COMMIT's own answer (an error, if it failed) comes with the reader's end.
        await reader.DisposeAsync();
        Interlocked.Increment(ref oneTrips);
        return (LeaseHolderOperations.CompletedPlainly(completions, changed), leased);
    }

    /// <summary>
    /// The long way, for groups whose refills want different tenants or types, or whose completions were refused or
    /// have dependents: BEGIN, the completions and the lock of the refills' candidates in one round trip; then (only
    /// when a call was refused or a completed task has dependents) reading those rows and resolving them, and locking
    /// again if that made tasks ready; then the lease of the chosen tasks and the COMMIT.
    /// </summary>
    private async Task<(LeaseHolderOperations.AppliedChanges, IReadOnlyList<IReadOnlyList<TaskRecord>>)> InTwoTripsAsync(
        List<HolderChange> completions, TaskLeaser.GroupLease? lease, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        Dictionary<Guid, TaskRecord> changed;
        await using (var batch = TaskLeaser.Batch(connection, tx, LeaseHolderOperations.CompleteStatement(completions), lease?.LockCandidates()))
        await using (var reader = await batch.ExecuteReaderAsync(ct))
        {
            changed = await LeaseHolderOperations.ReadChangedAsync(reader, ct);
            if (lease is not null)
            {
                await reader.NextResultAsync(ct);
                await lease.ReadCandidatesAsync(reader, ct);
            }
        }
        var completed = await LeaseHolderOperations.CompletedInAsync(connection, tx, completions, changed, ct);
        if (lease is null)
        {
            await tx.CommitAsync(ct);
            return (completed, []);
        }
        if (completed.Resolution is { TenantsWithReadyTasks.Count: > 0 })
        {
            // A completed dependency made tasks ready after the candidates were locked: lock again (the rows this
            // transaction holds come back with them), so the refills take the best of all in this transaction.
            await lease.LockAsync(connection, tx, ct);
        }
        return (completed, await lease.LeaseAndCommitAsync(connection, tx, ct));
    }

    /// <summary>Groups applied in one round trip, and groups that took the long way after their requirement stopped them (for tests).</summary>
    internal long OneTrips => Interlocked.Read(ref oneTrips);

    internal long FallBacks => Interlocked.Read(ref fallBacks);

    private long oneTrips, fallBacks;
}
