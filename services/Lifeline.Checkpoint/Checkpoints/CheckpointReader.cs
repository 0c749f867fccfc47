using Lifeline.Checkpoint.Storage;
using Lifeline.ServiceDefaults.Errors;
using Npgsql;

namespace Lifeline.Checkpoint.Checkpoints;

/// <summary>A skipped checkpoint: newer than the one returned, but corrupt.</summary>
public sealed record SkippedCheckpoint(Guid Id, long Sequence, string Reason);

/// <summary>What ListCheckpoints filters by.</summary>
public sealed record CheckpointFilter(
    int[] Types, string[] Tags, DateTime? CreatedAfter, DateTime? CreatedBefore, bool ValidOnly, int PageSize, long? BeforeSequence);

/// <summary>A workflow's head and what its checkpoints take.</summary>
public sealed record WorkflowSummary(
    string WorkflowId, Guid? HeadId, long HeadSequence, long CheckpointCount, long StoredBytes, long StateBytes, DateTime CreatedAt, DateTime UpdatedAt);

/// <summary>Reads checkpoints; every state returned was reconstructed from the store and verified just now.</summary>
public sealed class CheckpointReader(CheckpointStore store)
{
    public async Task<(CheckpointRecord Record, byte[] Canonical)> GetAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        var record = await CheckpointStore.GetAsync(connection, null, tenant, id, ct);
        return (record, await CheckpointStore.ReconstructAsync(connection, null, record, ct));
    }

    /// <summary>
    /// The newest valid checkpoint whose integrity holds, and the newer valid ones skipped as corrupt.
    /// NOT_FOUND when the workflow has no valid checkpoint; DATA_LOSS when every valid one is corrupt.
    /// </summary>
    public async Task<(CheckpointRecord Record, byte[] Canonical, List<SkippedCheckpoint> Skipped)> GetLatestAsync(
        string tenant, string workflowId, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await EnsureWorkflowAsync(connection, tenant, workflowId, ct);
        var skipped = new List<SkippedCheckpoint>();
        long? before = null;
        while (true)
        {
            var page = await ListAsync(connection, tenant, workflowId,
                new CheckpointFilter([], [], null, null, ValidOnly: true, PageSize: 16, before), ct);
            foreach (var candidate in page)
            {
                try
                {
                    return (candidate, await CheckpointStore.ReconstructAsync(connection, null, candidate, ct), skipped);
                }
                catch (DataLossException e)
                {
                    skipped.Add(new SkippedCheckpoint(candidate.Id, candidate.Sequence, e.Metadata["problem"]));
                }
            }
            if (page.Count < 16)
            {
                break;
            }
            before = page[^1].Sequence;
        }
        if (skipped.Count > 0)
        {
            var e = new DataLossException("NO_INTACT_CHECKPOINT",
                $"Workflow '{workflowId}' has no intact valid checkpoint: {skipped.Count} valid checkpoint(s) failed their integrity check.");
            e.Metadata["workflow_id"] = workflowId;
            e.Metadata["corrupt_checkpoint_ids"] = string.Join(',', skipped.Select(s => s.Id));
            throw e;
        }
        throw new NotFoundException("checkpoint", $"latest valid checkpoint of workflow {workflowId}");
    }

    public async Task<List<CheckpointRecord>> ListAsync(string tenant, string workflowId, CheckpointFilter filter, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await EnsureWorkflowAsync(connection, tenant, workflowId, ct);
        return await ListAsync(connection, tenant, workflowId, filter, ct);
    }

    public async Task<WorkflowSummary> GetWorkflowAsync(string tenant, string workflowId, CancellationToken ct)
    {
        await using var connection = await store.OpenAsync(ct);
        await using var select = new NpgsqlCommand(
            """
            SELECT w.head_id, w.head_sequence, w.created_at, w.updated_at,
                   count(c.id), coalesce(sum(c.stored_bytes), 0)::bigint, coalesce(sum(c.size_bytes), 0)::bigint
            FROM workflows w LEFT JOIN checkpoints c ON c.tenant_id = w.tenant_id AND c.workflow_id = w.workflow_id
            WHERE w.tenant_id = @t AND w.workflow_id = @w
            GROUP BY w.head_id, w.head_sequence, w.created_at, w.updated_at
            """, connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        await using var r = await select.ExecuteReaderAsync(ct);
        if (!await r.ReadAsync(ct))
        {
            throw new NotFoundException("workflow", workflowId);
        }
        return new WorkflowSummary(workflowId, r.IsDBNull(0) ? null : r.GetGuid(0), r.GetInt64(1), r.GetInt64(4), r.GetInt64(5), r.GetInt64(6),
            r.GetDateTime(2), r.GetDateTime(3));
    }

    internal static async Task<List<CheckpointRecord>> ListAsync(
        NpgsqlConnection connection, string tenant, string workflowId, CheckpointFilter filter, CancellationToken ct)
    {
        await using var select = new NpgsqlCommand(
            $"""
            SELECT {CheckpointRecord.Columns} FROM checkpoints
            WHERE tenant_id = @t AND workflow_id = @w
              AND (cardinality(@types::int[]) = 0 OR type = ANY(@types))
              AND (cardinality(@tags::text[]) = 0 OR tags && @tags)
              AND (@after::timestamptz IS NULL OR created_at >= @after)
              AND (@before_time::timestamptz IS NULL OR created_at < @before_time)
              AND (NOT @valid_only OR is_valid)
              AND (@before_seq::bigint IS NULL OR sequence < @before_seq)
            ORDER BY sequence DESC
            LIMIT @limit
            """, connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        select.Parameters.AddWithValue("types", filter.Types);
        select.Parameters.AddWithValue("tags", filter.Tags);
        select.Parameters.AddWithValue("after", (object?)filter.CreatedAfter ?? DBNull.Value);
        select.Parameters.AddWithValue("before_time", (object?)filter.CreatedBefore ?? DBNull.Value);
        select.Parameters.AddWithValue("valid_only", filter.ValidOnly);
        select.Parameters.AddWithValue("before_seq", (object?)filter.BeforeSequence ?? DBNull.Value);
        select.Parameters.AddWithValue("limit", filter.PageSize);
        var result = new List<CheckpointRecord>();
        await using var r = await select.ExecuteReaderAsync(ct);
        while (await r.ReadAsync(ct))
        {
            result.Add(CheckpointRecord.Read(r));
        }
        return result;
    }

    internal static async Task EnsureWorkflowAsync(NpgsqlConnection connection, string tenant, string workflowId, CancellationToken ct)
    {
        await using var select = new NpgsqlCommand("SELECT 1 FROM workflows WHERE tenant_id = @t AND workflow_id = @w", connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        if (await select.ExecuteScalarAsync(ct) is null)
        {
            throw new NotFoundException("workflow", workflowId);
        }
    }
}
