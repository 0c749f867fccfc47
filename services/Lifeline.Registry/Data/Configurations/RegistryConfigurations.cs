using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lifeline.Registry.Data.Configurations;

internal sealed class WorkerEntityConfiguration : IEntityTypeConfiguration<WorkerEntity>
{
    public void Configure(EntityTypeBuilder<WorkerEntity> e)
    {
        e.ToTable("workers", t =>
        {
            t.HasCheckConstraint("ck_workers_type", "type IN ('orchestrator','standalone','ci_cd')");
            t.HasCheckConstraint("ck_workers_status", "status IN ('online','busy','draining','offline','error')");
            t.HasCheckConstraint("ck_workers_deregistered_offline", "deregistered_at IS NULL OR status = 'offline'");
            t.HasCheckConstraint("ck_workers_epoch", "session_epoch > 0");
            t.HasCheckConstraint("ck_workers_capabilities", "cardinality(capabilities) > 0");
        });
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Name).HasColumnName("name");
        e.Property(x => x.Type).HasColumnName("type");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.Capabilities).HasColumnName("capabilities");
        e.Property(x => x.Metadata).HasColumnName("metadata").HasColumnType("jsonb");
        e.Property(x => x.RunningTaskIds).HasColumnName("running_task_ids").HasDefaultValueSql("'{}'");
        e.Property(x => x.Load).HasColumnName("load").HasDefaultValue(0d);
        e.Property(x => x.LastHeartbeatAt).HasColumnName("last_heartbeat_at");
        e.Property(x => x.SessionEpoch).HasColumnName("session_epoch");
        e.Property(x => x.RegisteredAt).HasColumnName("registered_at");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        e.Property(x => x.DeregisteredAt).HasColumnName("deregistered_at");
        e.HasIndex(x => new { x.TenantId, x.Name }, "ux_workers_name").IsUnique();
        e.HasIndex(x => new { x.TenantId, x.Status }, "ix_workers_status");
    }
}

internal sealed class WorkerEventEntityConfiguration : IEntityTypeConfiguration<WorkerEventEntity>
{
    public void Configure(EntityTypeBuilder<WorkerEventEntity> e)
    {
        // Column "xid" (xid8) is added by the migration in SQL; WatchWorkers reads the log in commit order with it.
        e.ToTable("worker_events", t => t.HasCheckConstraint("ck_worker_events_type",
            "event_type IN ('registered','lost','recovered','draining','deregistered')"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.WorkerName).HasColumnName("worker_name");
        e.Property(x => x.EventType).HasColumnName("event_type");
        e.Property(x => x.SessionEpoch).HasColumnName("session_epoch");
        e.Property(x => x.RunningTaskIds).HasColumnName("running_task_ids");
        e.Property(x => x.Message).HasColumnName("message");
        e.Property(x => x.OccurredAt).HasColumnName("occurred_at").HasDefaultValueSql("now()");
        e.HasIndex(x => new { x.WorkerId, x.Id }, "ix_worker_events_worker");
    }
}

internal sealed class TaskOutcomeEntityConfiguration : IEntityTypeConfiguration<TaskOutcomeEntity>
{
    public void Configure(EntityTypeBuilder<TaskOutcomeEntity> e)
    {
        e.ToTable("task_outcomes", t => t.HasCheckConstraint("ck_task_outcomes_duration", "duration_ms >= 0"));
        e.HasKey(x => new { x.TenantId, x.OutcomeId });
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.OutcomeId).HasColumnName("outcome_id");
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.TaskId).HasColumnName("task_id");
        e.Property(x => x.TaskType).HasColumnName("task_type");
        e.Property(x => x.Success).HasColumnName("success");
        e.Property(x => x.DurationMs).HasColumnName("duration_ms");
        e.Property(x => x.ErrorCode).HasColumnName("error_code");
        e.Property(x => x.OccurredAt).HasColumnName("occurred_at");
        e.Property(x => x.RecordedAt).HasColumnName("recorded_at");
        e.HasIndex(x => new { x.WorkerId, x.OccurredAt }, "ix_task_outcomes_worker");
        e.HasOne<WorkerEntity>().WithMany().HasForeignKey(x => x.WorkerId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class WorkerStatsEntityConfiguration : IEntityTypeConfiguration<WorkerStatsEntity>
{
    public void Configure(EntityTypeBuilder<WorkerStatsEntity> e)
    {
        e.ToTable("worker_stats", t => t.HasCheckConstraint("ck_worker_stats_totals", "total = succeeded + failed AND total >= 0"));
        e.HasKey(x => x.WorkerId);
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Total).HasColumnName("total");
        e.Property(x => x.Succeeded).HasColumnName("succeeded");
        e.Property(x => x.Failed).HasColumnName("failed");
        e.Property(x => x.TotalDurationMs).HasColumnName("total_duration_ms");
        e.Property(x => x.ConsecutiveFailures).HasColumnName("consecutive_failures");
        e.Property(x => x.LastOutcomeAt).HasColumnName("last_outcome_at");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        e.HasIndex(x => x.TenantId, "ix_worker_stats_tenant");
        e.HasOne<WorkerEntity>().WithOne().HasForeignKey<WorkerStatsEntity>(x => x.WorkerId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class CircuitBreakerEntityConfiguration : IEntityTypeConfiguration<CircuitBreakerEntity>
{
    public void Configure(EntityTypeBuilder<CircuitBreakerEntity> e)
    {
        e.ToTable("circuit_breakers", t =>
        {
            t.HasCheckConstraint("ck_circuit_breakers_state", "state IN ('closed','open','half_open')");
            t.HasCheckConstraint("ck_circuit_breakers_open_has_reset", "(state = 'open') = (reset_at IS NOT NULL)");
        });
        e.HasKey(x => x.WorkerId);
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.State).HasColumnName("state");
        e.Property(x => x.ConsecutiveFailures).HasColumnName("consecutive_failures");
        e.Property(x => x.FailureThreshold).HasColumnName("failure_threshold");
        e.Property(x => x.ResetAt).HasColumnName("reset_at");
        e.Property(x => x.OpenedAt).HasColumnName("opened_at");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at");
        e.Property(x => x.Version).IsRowVersion(); // xmin: a concurrent change makes SaveChanges fail instead of overwriting
        e.HasIndex(x => new { x.TenantId, x.State }, "ix_circuit_breakers_state");
        e.HasOne<WorkerEntity>().WithOne().HasForeignKey<CircuitBreakerEntity>(x => x.WorkerId).OnDelete(DeleteBehavior.Cascade);
    }
}
