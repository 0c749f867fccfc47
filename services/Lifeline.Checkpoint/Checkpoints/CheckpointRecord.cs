using Npgsql;

namespace Lifeline.Checkpoint.Checkpoints;

/// <summary>A checkpoint's metadata as stored (everything but its payload).</summary>
public sealed record CheckpointRecord(
    Guid Id, string WorkflowId, long Sequence, string Name, int Type, int Phase, string Agent, string Description,
    string[] Tags, bool IsValid, string? InvalidReason, Guid? ParentId, string Checksum, long SizeBytes,
    int StorageKind, Guid? BaseId, int ChainDepth, long StoredBytes, DateTime CreatedAt)
{
    /// <summary>Columns in the order <see cref="Read"/> expects.</summary>
    public const string Columns =
        "id, workflow_id, sequence, name, type, phase, agent, description, tags, is_valid, invalid_reason, parent_id, " +
        "checksum, size_bytes, storage_kind, base_id, chain_depth, stored_bytes, created_at";

    public static CheckpointRecord Read(NpgsqlDataReader r, int offset = 0) => new(
        r.GetGuid(offset), r.GetString(offset + 1), r.GetInt64(offset + 2), r.GetString(offset + 3), r.GetInt32(offset + 4),
        r.GetInt32(offset + 5), r.GetString(offset + 6), r.GetString(offset + 7), r.GetFieldValue<string[]>(offset + 8),
        r.GetBoolean(offset + 9), r.IsDBNull(offset + 10) ? null : r.GetString(offset + 10),
        r.IsDBNull(offset + 11) ? null : r.GetGuid(offset + 11), r.GetString(offset + 12), r.GetInt64(offset + 13),
        r.GetInt32(offset + 14), r.IsDBNull(offset + 15) ? null : r.GetGuid(offset + 15), r.GetInt32(offset + 16),
        r.GetInt64(offset + 17), r.GetDateTime(offset + 18));
}

/// <summary>What a caller asks to save (validated).</summary>
public sealed record NewCheckpoint(
    string WorkflowId, string Name, int Type, int Phase, string Agent, string Description, string[] Tags,
    V1.CheckpointState State, Guid? ParentId);
