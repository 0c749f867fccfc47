using Lifeline.Checkpoint.Storage;
using Lifeline.ServiceDefaults.Errors;
using Npgsql;

namespace Lifeline.Checkpoint.Checkpoints;

/// <summary>What CleanupCheckpoints keeps; a checkpoint is removed only when no rule keeps it.</summary>
public sealed record CleanupRules(int KeepLast, bool KeepPhaseEndpoints, DateTime? OlderThan, bool DryRun);

public sealed record CleanupResult(List<Guid> Removed, List<Guid> Rewritten, long FreedBytes);

public sealed record DeleteResult(List<Guid> Reparented, List<Guid> Rewritten);

/// <summary>
/// Invalidates, deletes and cleans up checkpoints. Removal happens with the workflow's head row
/// locked (so no writer builds a delta on a checkpoint being removed), and in one transaction that
/// first rewrites every remaining checkpoint stored as a delta against a removed one as a full
/// snapshot, re-parents children to the nearest remaining ancestor, and only then deletes — so every
/// checkpoint that remains still reconstructs.
/// </summary>
public sealed class CheckpointPruner(CheckpointStore store, StateCache cache)
{
    private const int PhaseStart = 3;
    private const int PhaseEnd = 4;

    public async Task<CheckpointRecord> InvalidateAsync(string tenant, Guid id, string reason, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await using var update = new NpgsqlCommand(
            $"""
            UPDATE checkpoints SET is_valid = false, invalid_reason = CASE WHEN is_valid THEN @reason ELSE invalid_reason END
            WHERE id = @id AND tenant_id = @t
            RETURNING {CheckpointRecord.Columns}
            """, connection);
        update.Parameters.AddWithValue("id", id);
        update.Parameters.AddWithValue("t", tenant);
        update.Parameters.AddWithValue("reason", reason);
        await using var r = await update.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? CheckpointRecord.Read(r) : throw new NotFoundException("checkpoint", id.ToString());
    }

    public async Task<DeleteResult> DeleteAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        var target = await CheckpointStore.GetAsync(connection, null, tenant, id, ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var head = await CheckpointStore.LockWorkflowAsync(connection, tx, tenant, target.WorkflowId, create: false, ct);
        if (head?.HeadId == id)
        {
            var e = new PreconditionFailedException("CHECKPOINT_IS_HEAD",
                $"Checkpoint '{id}' is the head (current state) of workflow '{target.WorkflowId}'; roll back or save a newer checkpoint before deleting it.");
            e.Metadata["checkpoint_id"] = id.ToString();
            throw e;
        }
        // Read again under the lock: it may have been removed meanwhile.
        _ = await CheckpointStore.GetAsync(connection, tx, tenant, id, ct);
        var all = await LoadWorkflowAsync(connection, tx, tenant, target.WorkflowId, ct);
        var (rewritten, _) = await RemoveAsync(connection, tx, tenant, target.WorkflowId, all, new HashSet<Guid> { id }, ct);
        var reparented = all.Where(c => c.ParentId == id).Select(c => c.Id).ToList();
        await tx.CommitAsync(ct);
        cache.Remove(id);
        return new DeleteResult(reparented, rewritten);
    }

    public async Task<CleanupResult> CleanupAsync(string tenant, string workflowId, CleanupRules rules, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var head = await CheckpointStore.LockWorkflowAsync(connection, tx, tenant, workflowId, create: false, ct)
            ?? throw new NotFoundException("workflow", workflowId);
        var all = await LoadWorkflowAsync(connection, tx, tenant, workflowId, ct);
        var newestFirst = all.OrderByDescending(c => c.Sequence).ToList();
        var kept = new HashSet<Guid>();
        if (head.HeadId is { } headId)
        {
            kept.Add(headId);
        }
        if (rules.KeepLast > 0)
        {
            kept.UnionWith(newestFirst.Take(rules.KeepLast).Select(c => c.Id));
        }
        if (rules.KeepPhaseEndpoints)
        {
            kept.UnionWith(all.Where(c => c.Type is PhaseStart or PhaseEnd).Select(c => c.Id));
        }
        var removed = newestFirst
            .Where(c => !kept.Contains(c.Id) && (rules.OlderThan is not { } cutoff || c.CreatedAt < cutoff))
            .Select(c => c.Id)
            .ToHashSet();
        if (removed.Count == 0)
        {
            await tx.RollbackAsync(ct);
            return new CleanupResult([], [], 0);
        }
        if (rules.DryRun)
        {
            var wouldRewrite = all.Where(c => !removed.Contains(c.Id) && c.BaseId is { } b && removed.Contains(b)).Select(c => c.Id).ToList();
            await tx.RollbackAsync(ct);
            return new CleanupResult(removed.ToList(), wouldRewrite, all.Where(c => removed.Contains(c.Id)).Sum(c => c.StoredBytes));
        }
        var (rewritten, extraBytes) = await RemoveAsync(connection, tx, tenant, workflowId, all, removed, ct);
        await tx.CommitAsync(ct);
        foreach (var id in removed)
        {
            cache.Remove(id);
        }
        return new CleanupResult(
            newestFirst.Where(c => removed.Contains(c.Id)).Select(c => c.Id).ToList(), rewritten,
            all.Where(c => removed.Contains(c.Id)).Sum(c => c.StoredBytes) - extraBytes);
    }

    /// <summary>Workflows holding more checkpoints than <paramref name="keepLast"/> (for the retention bound).</summary>
    public async Task<List<(string Tenant, string WorkflowId)>> WorkflowsOverAsync(int keepLast, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await using var select = new NpgsqlCommand(
            // Phase endpoints are kept, so they don't count towards the bound; the fullest workflows go first.
            """
            SELECT tenant_id, workflow_id FROM checkpoints WHERE type NOT IN (3, 4)
            GROUP BY tenant_id, workflow_id HAVING count(*) > @n
            ORDER BY count(*) DESC LIMIT 1000
            """, connection);
        select.Parameters.AddWithValue("n", keepLast);
        var result = new List<(string, string)>();
        await using var r = await select.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            result.Add((r.GetString(0), r.GetString(1)));
        }
        return result;
    }

    /// <summary>
    /// Rewrites remaining dependents of removed checkpoints as full snapshots, re-parents children to
    /// the nearest remaining ancestor, deletes, and recomputes chain depths. Returns the rewritten ids
    /// and the bytes the rewrites added.
    /// </summary>
    private static async Task<(List<Guid> Rewritten, long ExtraBytes)> RemoveAsync(
        NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, string workflowId,
        List<CheckpointRecord> all, IReadOnlySet<Guid> removed, CancellationToken ct)
    {
        var byId = all.ToDictionary(c => c.Id);
        var rewritten = new List<Guid>();
        long extra = 0;
        foreach (var dependent in all.Where(c => !removed.Contains(c.Id) && c.BaseId is { } b && removed.Contains(b)).OrderBy(c => c.Sequence))
        {
            var canonical = await CheckpointStore.ReconstructAsync(connection, tx, dependent, ct);
            await CheckpointStore.RewriteAsFullAsync(connection, tx, dependent.Id, canonical, ct);
            rewritten.Add(dependent.Id);
            extra += StateCodec.Compress(canonical).LongLength - dependent.StoredBytes;
        }

        var reparent = new List<(Guid Id, Guid? Parent)>();
        foreach (var c in all.Where(c => !removed.Contains(c.Id) && c.ParentId is { } p && removed.Contains(p)))
        {
            var parent = c.ParentId;
            while (parent is { } p && removed.Contains(p))
            {
                parent = byId.TryGetValue(p, out var r) ? r.ParentId : null;
            }
            reparent.Add((c.Id, parent));
        }
        await using var batch = new NpgsqlBatch(connection, tx);
        if (reparent.Count > 0)
        {
            batch.BatchCommands.Add(new NpgsqlBatchCommand(
                "UPDATE checkpoints c SET parent_id = r.parent FROM unnest(@ids::uuid[], @parents::uuid[]) AS r(id, parent) WHERE c.id = r.id")
            {
                Parameters =
                {
                    new("ids", reparent.Select(r => r.Id).ToArray()),
                    new("parents", reparent.Select(r => r.Parent).ToArray()),
                },
            });
        }
        batch.BatchCommands.Add(new NpgsqlBatchCommand("DELETE FROM checkpoints WHERE id = ANY(@ids)") { Parameters = { new("ids", removed.ToArray()) } });
        await batch.ExecuteNonQueryAsync(ct);
        if (rewritten.Count > 0)
        {
            await CheckpointStore.RecomputeChainDepthsAsync(connection, tx, tenant, workflowId, ct);
        }
        return (rewritten, extra);
    }

    private static async Task<List<CheckpointRecord>> LoadWorkflowAsync(
        NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, string workflowId, CancellationToken ct)
    {
        await using var select = new NpgsqlCommand(
            $"SELECT {CheckpointRecord.Columns} FROM checkpoints WHERE tenant_id = @t AND workflow_id = @w", connection, tx);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        var result = new List<CheckpointRecord>();
        await using var r = await select.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            result.Add(CheckpointRecord.Read(r));
        }
        return result;
    }
}
