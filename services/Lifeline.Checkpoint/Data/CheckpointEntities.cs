namespace Lifeline.Checkpoint.Data;

/// <summary>A row of <c>workflows</c>: a workflow's head, the lock two writers of one workflow meet on.</summary>
public sealed class WorkflowEntity
{
    public required string TenantId { get; set; }
    public required string WorkflowId { get; set; }
    public Guid? HeadId { get; set; }
    public long HeadSequence { get; set; }
    public long NextSequence { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime UpdatedAt { get; set; }
}

/// <summary>
/// A row of <c>checkpoints</c>: metadata, and the state as a compressed full snapshot or a
/// compressed delta against <see cref="BaseId"/> (which, unlike <see cref="ParentId"/>, only changes
/// when the checkpoint is rewritten).
/// </summary>
public sealed class CheckpointEntity
{
    public Guid Id { get; set; }
    public required string TenantId { get; set; }
    public required string WorkflowId { get; set; }
    public long Sequence { get; set; }
    public required string Name { get; set; }
    public int Type { get; set; }
    public int Phase { get; set; }
    public required string Agent { get; set; }
    public required string Description { get; set; }
    public required string[] Tags { get; set; }
    public bool IsValid { get; set; }
    public string? InvalidReason { get; set; }
    public Guid? ParentId { get; set; }
    public required string Checksum { get; set; }
    public long SizeBytes { get; set; }
    public int StorageKind { get; set; }
    public Guid? BaseId { get; set; }
    public int ChainDepth { get; set; }
    public long StoredBytes { get; set; }
    public required byte[] Payload { get; set; }
    public DateTime CreatedAt { get; set; }
}

/// <summary>A row of <c>checkpoint_artifacts</c>: an uploaded artifact a checkpoint's state refers to (keeps it from collection).</summary>
public sealed class CheckpointArtifactEntity
{
    public Guid CheckpointId { get; set; }
    public required string TenantId { get; set; }
    public required string Sha256 { get; set; }
}

/// <summary>A row of <c>artifacts</c>: one stored content per tenant and SHA-256.</summary>
public sealed class ArtifactEntity
{
    public required string TenantId { get; set; }
    public required string Sha256 { get; set; }
    public Guid BlobId { get; set; }
    public long Size { get; set; }
    public required string Name { get; set; }
    public required string ContentType { get; set; }
    public DateTime CreatedAt { get; set; }
    public DateTime LastUsedAt { get; set; }
}

/// <summary>A row of <c>artifact_chunks</c>: bytes of one upload, in order.</summary>
public sealed class ArtifactChunkEntity
{
    public Guid BlobId { get; set; }
    public int Seq { get; set; }
    public required byte[] Data { get; set; }
    public DateTime CreatedAt { get; set; }
}
