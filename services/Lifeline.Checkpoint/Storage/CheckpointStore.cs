using Lifeline.Checkpoint.Checkpoints;
using Lifeline.ServiceDefaults.Errors;
using Npgsql;
using NpgsqlTypes;

namespace Lifeline.Checkpoint.Storage;

/// <summary>
/// The SQL primitives every checkpoint operation is made of: locking a workflow's head, reading a
/// checkpoint's storage chain and verifying what it reconstructs, inserting a checkpoint, and
/// rewriting one as a full snapshot. Callers own the connection and transaction.
/// </summary>
public sealed class CheckpointStore(NpgsqlDataSource dataSource)
{
    /// <summary>Longest chain a read follows; longer means the stored links are damaged.</summary>
    private const int ChainLimit = 1001;

    public ValueTask<NpgsqlConnection> OpenAsync(CancellationToken ct) => dataSource.OpenConnectionAsync(ct);

    /// <summary>A workflow's head row, locked until the transaction ends; null when the workflow does not exist (and is not created).</summary>
    public static async Task<WorkflowHead?> LockWorkflowAsync(
        NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, string workflowId, bool create, CancellationToken ct)
    {
        if (create)
        {
            await using var insert = new NpgsqlCommand(
                "INSERT INTO workflows (tenant_id, workflow_id, head_id, head_sequence, next_sequence) VALUES (@t, @w, NULL, 0, 1) " +
                "ON CONFLICT (tenant_id, workflow_id) DO NOTHING", connection, tx);
            insert.Parameters.AddWithValue("t", tenant);
            insert.Parameters.AddWithValue("w", workflowId);
            await insert.ExecuteNonQueryAsync(ct);
        }
        await using var select = new NpgsqlCommand(
            "SELECT head_id, head_sequence, next_sequence FROM workflows WHERE tenant_id = @t AND workflow_id = @w FOR UPDATE", connection, tx);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        await using var r = await select.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct)
            ? new WorkflowHead(r.IsDBNull(0) ? null : r.GetGuid(0), r.GetInt64(1), r.GetInt64(2))
            : null;
    }

    /// <summary>The head of a workflow without locking; null when the workflow does not exist.</summary>
    public async Task<WorkflowHead?> ReadHeadAsync(string tenant, string workflowId, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var select = new NpgsqlCommand(
            "SELECT head_id, head_sequence, next_sequence FROM workflows WHERE tenant_id = @t AND workflow_id = @w", connection);
        select.Parameters.AddWithValue("t", tenant);
        select.Parameters.AddWithValue("w", workflowId);
        await using var r = await select.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? new WorkflowHead(r.IsDBNull(0) ? null : r.GetGuid(0), r.GetInt64(1), r.GetInt64(2)) : null;
    }

    /// <summary>One checkpoint's metadata (this tenant's); null when there is none.</summary>
    public static async Task<CheckpointRecord?> FindAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string tenant, Guid id, CancellationToken ct)
    {
        await using var select = new NpgsqlCommand(
            $"SELECT {CheckpointRecord.Columns} FROM checkpoints WHERE id = @id AND tenant_id = @t", connection, tx);
        select.Parameters.AddWithValue("id", id);
        select.Parameters.AddWithValue("t", tenant);
        await using var r = await select.ExecuteReaderAsync(ct);
        return await r.ReadAsync(ct) ? CheckpointRecord.Read(r) : null;
    }

    /// <summary>One checkpoint's metadata, or NOT_FOUND.</summary>
    public static async Task<CheckpointRecord> GetAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string tenant, Guid id, CancellationToken ct) =>
        await FindAsync(connection, tx, tenant, id, ct) ?? throw new NotFoundException("checkpoint", id.ToString());

    /// <summary>
    /// Reconstructs a checkpoint's canonical state from its chain (one query) and verifies it against
    /// the stored checksum; DATA_LOSS (<c>CHECKPOINT_CORRUPTED</c>) naming the checkpoint when anything
    /// on the chain is damaged.
    /// </summary>
    public static async Task<byte[]> ReconstructAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, CheckpointRecord checkpoint, CancellationToken ct)
    {
        var chain = new List<(int StorageKind, byte[] Payload)>();
        await using (var select = new NpgsqlCommand(
            """
            WITH RECURSIVE chain AS (
                SELECT id, base_id, storage_kind, payload, 0 AS step FROM checkpoints WHERE id = @id
                UNION ALL
                SELECT c.id, c.base_id, c.storage_kind, c.payload, chain.step + 1
                FROM checkpoints c JOIN chain ON c.id = chain.base_id
                WHERE chain.step < @limit
            )
            SELECT storage_kind, payload FROM chain ORDER BY step DESC
            """, connection, tx))
        {
            select.Parameters.AddWithValue("id", checkpoint.Id);
            select.Parameters.AddWithValue("limit", ChainLimit);
            await using var r = await select.ExecuteReaderAsync(ct);
            while (await r.ReadAsync(ct))
            {
                chain.Add((r.GetInt32(0), r.GetFieldValue<byte[]>(1)));
            }
        }
        byte[] canonical;
        try
        {
            canonical = StateCodec.Reconstruct(chain);
        }
        catch (InvalidDataException e)
        {
            throw Corrupted(checkpoint, "its stored state cannot be decoded: " + e.Message);
        }
        if (canonical.LongLength != checkpoint.SizeBytes || CanonicalState.Checksum(canonical) != checkpoint.Checksum)
        {
            throw Corrupted(checkpoint, "checksum mismatch");
        }
        return canonical;
    }

    public static DataLossException Corrupted(CheckpointRecord checkpoint, string why)
    {
        var e = new DataLossException("CHECKPOINT_CORRUPTED",
            $"Checkpoint '{checkpoint.Id}' (workflow '{checkpoint.WorkflowId}', sequence {checkpoint.Sequence}) failed its integrity check: {why}.");
        e.Metadata["checkpoint_id"] = checkpoint.Id.ToString();
        e.Metadata["workflow_id"] = checkpoint.WorkflowId;
        e.Metadata["problem"] = why;
        return e;
    }

    /// <summary>Inserts a checkpoint, its artifact references, and moves the workflow's head to it.</summary>
    public static async Task<CheckpointRecord> InsertAsync(
        NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, WorkflowHead head, NewCheckpoint spec,
        byte[] canonical, string checksum, EncodedState encoded, Guid? parentId, CancellationToken ct)
    {
        var id = Guid.CreateVersion7();
        var sequence = head.NextSequence;
        var artifactShas = spec.State.Artifacts.Select(a => a.Checksum).Where(IsSha256).Distinct(StringComparer.Ordinal).ToArray();
        var batch = new NpgsqlBatch(connection, tx)
        {
            BatchCommands =
            {
                new NpgsqlBatchCommand(
                    $"""
                    INSERT INTO checkpoints (id, tenant_id, workflow_id, sequence, name, type, phase, agent, description, tags, is_valid,
                        parent_id, checksum, size_bytes, storage_kind, base_id, chain_depth, stored_bytes, payload)
                    VALUES (@id, @t, @w, @seq, @name, @type, @phase, @agent, @description, @tags, true,
                        @parent, @checksum, @size, @kind, @base, @depth, @stored, @payload)
                    RETURNING {CheckpointRecord.Columns}
                    """)
                {
                    Parameters =
                    {
                        new("id", id), new("t", tenant), new("w", spec.WorkflowId), new("seq", sequence), new("name", spec.Name),
                        new("type", spec.Type), new("phase", spec.Phase), new("agent", spec.Agent), new("description", spec.Description),
                        new("tags", spec.Tags), new("parent", (object?)parentId ?? DBNull.Value), new("checksum", checksum),
                        new("size", canonical.LongLength), new("kind", encoded.StorageKind), new("base", (object?)encoded.BaseId ?? DBNull.Value),
                        new("depth", encoded.ChainDepth), new("stored", encoded.Payload.LongLength),
                        new("payload", NpgsqlDbType.Bytea) { Value = encoded.Payload },
                    },
                },
                new NpgsqlBatchCommand(
                    "INSERT INTO checkpoint_artifacts (checkpoint_id, tenant_id, sha256) SELECT @id, @t, unnest(@shas::text[])")
                {
                    Parameters = { new("id", id), new("t", tenant), new("shas", artifactShas) },
                },
                // Touching the referenced artifacts makes collection wait for this transaction and then see them as used
                // (its DELETE re-checks last_used_at on the new row version), so a new reference never points at a collected artifact.
                new NpgsqlBatchCommand(
                    "UPDATE artifacts SET last_used_at = now() WHERE tenant_id = @t AND sha256 = ANY(@shas) AND cardinality(@shas::text[]) > 0")
                {
                    Parameters = { new("t", tenant), new("shas", artifactShas) },
                },
                new NpgsqlBatchCommand(
                    "UPDATE workflows SET head_id = @id, head_sequence = @seq, next_sequence = @seq + 1, updated_at = now() " +
                    "WHERE tenant_id = @t AND workflow_id = @w")
                {
                    Parameters = { new("id", id), new("seq", sequence), new("t", tenant), new("w", spec.WorkflowId) },
                },
            },
        };
        await using (batch)
        {
            await using var r = await batch.ExecuteReaderAsync(ct);
            await r.ReadAsync(ct);
            return CheckpointRecord.Read(r);
        }
    }

    /// <summary>Rewrites a checkpoint as a full snapshot (its base is going away).</summary>
    public static async Task RewriteAsFullAsync(NpgsqlConnection connection, NpgsqlTransaction tx, Guid id, byte[] canonical, CancellationToken ct)
    {
        var payload = StateCodec.Compress(canonical);
        await using var update = new NpgsqlCommand(
            "UPDATE checkpoints SET storage_kind = 1, base_id = NULL, chain_depth = 0, payload = @payload, stored_bytes = @stored WHERE id = @id",
            connection, tx);
        update.Parameters.AddWithValue("id", id);
        update.Parameters.Add(new NpgsqlParameter("payload", NpgsqlDbType.Bytea) { Value = payload });
        update.Parameters.AddWithValue("stored", payload.LongLength);
        await update.ExecuteNonQueryAsync(ct);
    }

    /// <summary>Recomputes every checkpoint's distance from its full snapshot in a workflow (after rewrites shortened chains).</summary>
    public static async Task RecomputeChainDepthsAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string tenant, string workflowId, CancellationToken ct)
    {
        await using var update = new NpgsqlCommand(
            """
            WITH RECURSIVE depth AS (
                SELECT id, 0 AS d FROM checkpoints WHERE tenant_id = @t AND workflow_id = @w AND storage_kind = 1
                UNION ALL
                SELECT c.id, depth.d + 1 FROM checkpoints c JOIN depth ON c.base_id = depth.id
            )
            UPDATE checkpoints c SET chain_depth = depth.d FROM depth WHERE c.id = depth.id AND c.chain_depth <> depth.d
            """, connection, tx);
        update.Parameters.AddWithValue("t", tenant);
        update.Parameters.AddWithValue("w", workflowId);
        await update.ExecuteNonQueryAsync(ct);
    }

    public static bool IsSha256(string value) =>
        value.Length == 64 && value.All(c => c is (>= '0' and <= '9') or (>= 'a' and <= 'f'));
}

/// <summary>A workflow's head as stored: the current checkpoint and the next sequence number.</summary>
public sealed record WorkflowHead(Guid? HeadId, long HeadSequence, long NextSequence);
