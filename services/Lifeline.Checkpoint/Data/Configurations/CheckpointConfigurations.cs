using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lifeline.Checkpoint.Data.Configurations;

internal sealed class WorkflowEntityConfiguration : IEntityTypeConfiguration<WorkflowEntity>
{
    public void Configure(EntityTypeBuilder<WorkflowEntity> e)
    {
        e.ToTable("workflows", t => t.HasCheckConstraint("ck_workflows_sequence", "next_sequence > head_sequence"));
        e.HasKey(x => new { x.TenantId, x.WorkflowId });
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.WorkflowId).HasColumnName("workflow_id");
        e.Property(x => x.HeadId).HasColumnName("head_id");
        e.Property(x => x.HeadSequence).HasColumnName("head_sequence");
        e.Property(x => x.NextSequence).HasColumnName("next_sequence");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at").HasDefaultValueSql("now()");
    }
}

internal sealed class CheckpointEntityConfiguration : IEntityTypeConfiguration<CheckpointEntity>
{
    public void Configure(EntityTypeBuilder<CheckpointEntity> e)
    {
        e.ToTable("checkpoints", t =>
        {
            t.HasCheckConstraint("ck_checkpoints_type", "type BETWEEN 1 AND 9");
            t.HasCheckConstraint("ck_checkpoints_storage", "(storage_kind = 1 AND base_id IS NULL AND chain_depth = 0) OR (storage_kind = 2 AND base_id IS NOT NULL AND chain_depth > 0)");
            t.HasCheckConstraint("ck_checkpoints_checksum", "checksum ~ '^[0-9a-f]{64}$'");
        });
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.WorkflowId).HasColumnName("workflow_id");
        e.Property(x => x.Sequence).HasColumnName("sequence");
        e.Property(x => x.Name).HasColumnName("name");
        e.Property(x => x.Type).HasColumnName("type");
        e.Property(x => x.Phase).HasColumnName("phase");
        e.Property(x => x.Agent).HasColumnName("agent");
        e.Property(x => x.Description).HasColumnName("description");
        e.Property(x => x.Tags).HasColumnName("tags");
        e.Property(x => x.IsValid).HasColumnName("is_valid");
        e.Property(x => x.InvalidReason).HasColumnName("invalid_reason");
        e.Property(x => x.ParentId).HasColumnName("parent_id");
        e.Property(x => x.Checksum).HasColumnName("checksum");
        e.Property(x => x.SizeBytes).HasColumnName("size_bytes");
        e.Property(x => x.StorageKind).HasColumnName("storage_kind");
        e.Property(x => x.BaseId).HasColumnName("base_id");
        e.Property(x => x.ChainDepth).HasColumnName("chain_depth");
        e.Property(x => x.StoredBytes).HasColumnName("stored_bytes");
        e.Property(x => x.Payload).HasColumnName("payload");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.HasIndex(x => new { x.TenantId, x.WorkflowId, x.Sequence }, "ux_checkpoints_sequence").IsUnique();
        e.HasIndex(x => x.BaseId, "ix_checkpoints_base").HasFilter("base_id IS NOT NULL");
        e.HasIndex(x => x.ParentId, "ix_checkpoints_parent").HasFilter("parent_id IS NOT NULL");
        e.HasOne<WorkflowEntity>().WithMany().HasForeignKey(x => new { x.TenantId, x.WorkflowId }).OnDelete(DeleteBehavior.Restrict);
        // A delta's base may not disappear under it: removal rewrites dependents first, and the database holds it to that
        // (NO ACTION: checked at the end of the statement, so one statement may remove a base with its deltas).
        e.HasOne<CheckpointEntity>().WithMany().HasForeignKey(x => x.BaseId).OnDelete(DeleteBehavior.NoAction);
    }
}

internal sealed class CheckpointArtifactEntityConfiguration : IEntityTypeConfiguration<CheckpointArtifactEntity>
{
    public void Configure(EntityTypeBuilder<CheckpointArtifactEntity> e)
    {
        e.ToTable("checkpoint_artifacts");
        e.HasKey(x => new { x.CheckpointId, x.Sha256 });
        e.Property(x => x.CheckpointId).HasColumnName("checkpoint_id");
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Sha256).HasColumnName("sha256");
        e.HasIndex(x => new { x.TenantId, x.Sha256 }, "ix_checkpoint_artifacts_sha");
        e.HasOne<CheckpointEntity>().WithMany().HasForeignKey(x => x.CheckpointId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class ArtifactEntityConfiguration : IEntityTypeConfiguration<ArtifactEntity>
{
    public void Configure(EntityTypeBuilder<ArtifactEntity> e)
    {
        e.ToTable("artifacts", t => t.HasCheckConstraint("ck_artifacts_sha", "sha256 ~ '^[0-9a-f]{64}$'"));
        e.HasKey(x => new { x.TenantId, x.Sha256 });
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Sha256).HasColumnName("sha256");
        e.Property(x => x.BlobId).HasColumnName("blob_id");
        e.Property(x => x.Size).HasColumnName("size");
        e.Property(x => x.Name).HasColumnName("name");
        e.Property(x => x.ContentType).HasColumnName("content_type");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.Property(x => x.LastUsedAt).HasColumnName("last_used_at").HasDefaultValueSql("now()");
        e.HasIndex(x => x.BlobId, "ux_artifacts_blob").IsUnique();
    }
}

internal sealed class ArtifactChunkEntityConfiguration : IEntityTypeConfiguration<ArtifactChunkEntity>
{
    public void Configure(EntityTypeBuilder<ArtifactChunkEntity> e)
    {
        // Chunks of an upload exist before its artifacts row (written once the whole upload hashed), so no foreign key.
        e.ToTable("artifact_chunks");
        e.HasKey(x => new { x.BlobId, x.Seq });
        e.Property(x => x.BlobId).HasColumnName("blob_id");
        e.Property(x => x.Seq).HasColumnName("seq");
        e.Property(x => x.Data).HasColumnName("data");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
    }
}
