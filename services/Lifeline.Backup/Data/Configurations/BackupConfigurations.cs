using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lifeline.Backup.Data.Configurations;

internal sealed class BackupEntityConfiguration : IEntityTypeConfiguration<BackupEntity>
{
    public void Configure(EntityTypeBuilder<BackupEntity> e)
    {
        e.ToTable("backups", t =>
        {
            t.HasCheckConstraint("ck_backups_type", "type IN ('full','incremental','differential')");
            t.HasCheckConstraint("ck_backups_status", "status IN ('running','completed','failed')");
            t.HasCheckConstraint("ck_backups_verification", "verification IN ('unverified','passed','failed')");
            // A completed backup has its checksum and end time; a full has no parent, the others have one.
            t.HasCheckConstraint("ck_backups_completed", "status <> 'completed' OR (sha256 IS NOT NULL AND completed_at IS NOT NULL)");
            t.HasCheckConstraint("ck_backups_parent", "(type = 'full') = (parent_id IS NULL)");
            t.HasCheckConstraint("ck_backups_range", "end_lsn >= start_lsn");
        });
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Target).HasColumnName("target");
        e.Property(x => x.Type).HasColumnName("type");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.ParentId).HasColumnName("parent_id");
        e.Property(x => x.BaseId).HasColumnName("base_id");
        e.Property(x => x.StartLsn).HasColumnName("start_lsn");
        e.Property(x => x.EndLsn).HasColumnName("end_lsn");
        e.Property(x => x.SlotName).HasColumnName("slot_name");
        e.Property(x => x.FileName).HasColumnName("file_name");
        e.Property(x => x.SizeBytes).HasColumnName("size_bytes");
        e.Property(x => x.Sha256).HasColumnName("sha256");
        e.Property(x => x.StartedAt).HasColumnName("started_at");
        e.Property(x => x.CompletedAt).HasColumnName("completed_at");
        e.Property(x => x.DurationMs).HasColumnName("duration_ms");
        e.Property(x => x.ServerVersion).HasColumnName("server_version");
        e.Property(x => x.SchemaVersion).HasColumnName("schema_version");
        e.Property(x => x.SchemaFingerprint).HasColumnName("schema_fingerprint");
        e.Property(x => x.ChangeCount).HasColumnName("change_count");
        e.Property(x => x.TableChecksums).HasColumnName("table_checksums").HasColumnType("jsonb");
        e.Property(x => x.Verification).HasColumnName("verification").HasDefaultValue("unverified");
        e.Property(x => x.VerifiedAt).HasColumnName("verified_at");
        e.Property(x => x.VerificationMessage).HasColumnName("verification_message");
        e.Property(x => x.Error).HasColumnName("error");
        e.HasIndex(x => new { x.Target, x.StartedAt }, "ix_backups_target_started");
        e.HasIndex(x => x.ParentId, "ix_backups_parent");
        // One backup of a target runs at a time (the target lock decides; this makes it a store invariant too).
        e.HasIndex(x => x.Target, "ux_backups_running").IsUnique().HasFilter("status = 'running'");
        e.HasOne<BackupEntity>().WithMany().HasForeignKey(x => x.ParentId).OnDelete(DeleteBehavior.Restrict);
    }
}

internal sealed class RestoreRunEntityConfiguration : IEntityTypeConfiguration<RestoreRunEntity>
{
    public void Configure(EntityTypeBuilder<RestoreRunEntity> e)
    {
        e.ToTable("restore_runs", t => t.HasCheckConstraint("ck_restore_runs_status", "status IN ('running','completed','failed')"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Target).HasColumnName("target");
        e.Property(x => x.BackupId).HasColumnName("backup_id");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.PreRestoreBackupId).HasColumnName("pre_restore_backup_id");
        e.Property(x => x.RestoredDatabase).HasColumnName("restored_database");
        e.Property(x => x.ReplacedDatabase).HasColumnName("replaced_database");
        e.Property(x => x.StartedAt).HasColumnName("started_at");
        e.Property(x => x.CompletedAt).HasColumnName("completed_at");
        e.Property(x => x.Error).HasColumnName("error");
        // At most one restore of a target runs at a time (the target lock decides; this makes it a store invariant too).
        e.HasIndex(x => x.Target, "ux_restore_runs_running").IsUnique().HasFilter("status = 'running'");
    }
}

internal sealed class ScheduleEntityConfiguration : IEntityTypeConfiguration<ScheduleEntity>
{
    public void Configure(EntityTypeBuilder<ScheduleEntity> e)
    {
        e.ToTable("schedules", t => t.HasCheckConstraint("ck_schedules_type", "type IN ('full','incremental','differential')"));
        e.HasKey(x => new { x.Target, x.Type });
        e.Property(x => x.Target).HasColumnName("target");
        e.Property(x => x.Type).HasColumnName("type");
        e.Property(x => x.Cron).HasColumnName("cron");
        e.Property(x => x.NextRunAt).HasColumnName("next_run_at");
        e.Property(x => x.LastRunAt).HasColumnName("last_run_at");
        e.Property(x => x.LastBackupId).HasColumnName("last_backup_id");
        e.Property(x => x.LastError).HasColumnName("last_error");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        e.HasIndex(x => x.NextRunAt, "ix_schedules_next_run");
    }
}
