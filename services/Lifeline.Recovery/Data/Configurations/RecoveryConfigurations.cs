using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Lifeline.Recovery.Data.Configurations;

internal sealed class WatchCursorConfiguration : IEntityTypeConfiguration<WatchCursorEntity>
{
    public void Configure(EntityTypeBuilder<WatchCursorEntity> e)
    {
        e.ToTable("watch_cursors");
        e.HasKey(x => new { x.TenantId, x.Source });
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Source).HasColumnName("source");
        e.Property(x => x.Position).HasColumnName("position");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at").HasDefaultValueSql("now()");
    }
}

internal sealed class RecoveryActionConfiguration : IEntityTypeConfiguration<RecoveryActionEntity>
{
    public void Configure(EntityTypeBuilder<RecoveryActionEntity> e)
    {
        e.ToTable("recovery_actions", t => t.HasCheckConstraint("ck_recovery_actions_action", "action BETWEEN 1 AND 4"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.TaskId).HasColumnName("task_id");
        e.Property(x => x.TaskType).HasColumnName("task_type");
        e.Property(x => x.WorkflowId).HasColumnName("workflow_id");
        e.Property(x => x.PreviousStatus).HasColumnName("previous_status");
        e.Property(x => x.NewStatus).HasColumnName("new_status");
        e.Property(x => x.Action).HasColumnName("action");
        e.Property(x => x.Trigger).HasColumnName("trigger");
        e.Property(x => x.Reason).HasColumnName("reason");
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.CheckpointId).HasColumnName("checkpoint_id");
        e.Property(x => x.FencingToken).HasColumnName("fencing_token");
        e.Property(x => x.DetectedAt).HasColumnName("detected_at");
        e.Property(x => x.RecoveredAt).HasColumnName("recovered_at");
        e.Property(x => x.Succeeded).HasColumnName("succeeded");
        e.Property(x => x.Error).HasColumnName("error");
        e.Property(x => x.LeaderToken).HasColumnName("leader_token");
        // One successful action per lease: repeating a scan (or the lost event and a scan both seeing a task) records it once.
        e.HasIndex(x => new { x.TenantId, x.TaskId, x.FencingToken }, "ux_recovery_actions_lease").IsUnique().HasFilter("succeeded");
        // The suite's actions newest first (platform admins); one tenant's (tenant callers: ListRecoveryActions, GetRecoveryStats).
        e.HasIndex(x => x.RecoveredAt, "ix_recovery_actions_time");
        e.HasIndex(x => new { x.TenantId, x.RecoveredAt, x.Id }, "ix_recovery_actions_tenant");
        e.HasIndex(x => new { x.TaskId, x.RecoveredAt }, "ix_recovery_actions_task");
    }
}

internal sealed class SystemStateConfiguration : IEntityTypeConfiguration<SystemStateEntity>
{
    public void Configure(EntityTypeBuilder<SystemStateEntity> e)
    {
        e.ToTable("system_states", t => t.HasCheckConstraint("ck_system_states_status", "status BETWEEN 1 AND 5"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.Version).HasColumnName("version");
        e.Property(x => x.WorkerPool).HasColumnName("worker_pool").HasColumnType("jsonb");
        e.Property(x => x.QueueCounts).HasColumnName("queue_counts").HasColumnType("jsonb");
        e.Property(x => x.Metrics).HasColumnName("metrics").HasColumnType("jsonb");
        e.Property(x => x.Configuration).HasColumnName("configuration").HasColumnType("jsonb");
        e.Property(x => x.Reason).HasColumnName("reason");
        e.Property(x => x.Message).HasColumnName("message");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("clock_timestamp()");
        e.HasIndex(x => x.CreatedAt, "ix_system_states_time");
    }
}

internal sealed class CheckRunConfiguration : IEntityTypeConfiguration<CheckRunEntity>
{
    public void Configure(EntityTypeBuilder<CheckRunEntity> e)
    {
        e.ToTable("check_runs");
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Scope).HasColumnName("scope");
        e.Property(x => x.StartedAt).HasColumnName("started_at");
        e.Property(x => x.FinishedAt).HasColumnName("finished_at");
        e.Property(x => x.Summary).HasColumnName("summary").HasColumnType("jsonb");
    }
}

internal sealed class ConsistencyIssueConfiguration : IEntityTypeConfiguration<ConsistencyIssueEntity>
{
    public void Configure(EntityTypeBuilder<ConsistencyIssueEntity> e)
    {
        e.ToTable("consistency_issues");
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.RunId).HasColumnName("run_id");
        e.Property(x => x.CheckName).HasColumnName("check_name");
        e.Property(x => x.Severity).HasColumnName("severity");
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Subject).HasColumnName("subject");
        e.Property(x => x.Description).HasColumnName("description");
        e.Property(x => x.Fixable).HasColumnName("fixable");
        e.Property(x => x.Fixed).HasColumnName("fixed");
        e.Property(x => x.FixResult).HasColumnName("fix_result");
        e.Property(x => x.Details).HasColumnName("details").HasColumnType("jsonb");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.Property(x => x.FixedAt).HasColumnName("fixed_at");
        e.HasIndex(x => x.RunId, "ix_consistency_issues_run");
        e.HasOne<CheckRunEntity>().WithMany().HasForeignKey(x => x.RunId).OnDelete(DeleteBehavior.Cascade);
    }
}

internal sealed class RecoveryPlanConfiguration : IEntityTypeConfiguration<RecoveryPlanEntity>
{
    public void Configure(EntityTypeBuilder<RecoveryPlanEntity> e)
    {
        e.ToTable("recovery_plans", t =>
        {
            t.HasCheckConstraint("ck_recovery_plans_status", "status BETWEEN 1 AND 8");
            t.HasCheckConstraint("ck_recovery_plans_category", "category BETWEEN 1 AND 7");
        });
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.ErrorCode).HasColumnName("error_code");
        e.Property(x => x.Category).HasColumnName("category");
        e.Property(x => x.Severity).HasColumnName("severity");
        e.Property(x => x.ErrorMessage).HasColumnName("error_message");
        e.Property(x => x.TaskId).HasColumnName("task_id");
        e.Property(x => x.WorkflowId).HasColumnName("workflow_id");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.RequiresApproval).HasColumnName("requires_approval");
        e.Property(x => x.ApprovedBy).HasColumnName("approved_by");
        e.Property(x => x.ApprovedAt).HasColumnName("approved_at");
        e.Property(x => x.Source).HasColumnName("source");
        e.Property(x => x.Actions).HasColumnName("actions").HasColumnType("jsonb");
        e.Property(x => x.NextSteps).HasColumnName("next_steps");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.Property(x => x.UpdatedAt).HasColumnName("updated_at").HasDefaultValueSql("now()");
        e.Property(x => x.Version).IsRowVersion();
        // Plans are listed per tenant, newest first (created_at, id), all of them or those in one status.
        e.HasIndex(x => new { x.TenantId, x.CreatedAt, x.Id }, "ix_recovery_plans_tenant");
        e.HasIndex(x => new { x.TenantId, x.Status, x.CreatedAt, x.Id }, "ix_recovery_plans_tenant_status");
    }
}

internal sealed class DrPlanConfiguration : IEntityTypeConfiguration<DrPlanEntity>
{
    public void Configure(EntityTypeBuilder<DrPlanEntity> e)
    {
        e.ToTable("dr_plans");
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Name).HasColumnName("name");
        e.Property(x => x.Description).HasColumnName("description");
        e.Property(x => x.Steps).HasColumnName("steps").HasColumnType("jsonb");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.HasIndex(x => x.Name, "ux_dr_plans_name").IsUnique();
    }
}

internal sealed class DrRunConfiguration : IEntityTypeConfiguration<DrRunEntity>
{
    public void Configure(EntityTypeBuilder<DrRunEntity> e)
    {
        e.ToTable("dr_runs", t => t.HasCheckConstraint("ck_dr_runs_status", "status BETWEEN 1 AND 5"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.PlanId).HasColumnName("plan_id");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.Steps).HasColumnName("steps").HasColumnType("jsonb");
        e.Property(x => x.StartedBy).HasColumnName("started_by");
        e.Property(x => x.StartedAt).HasColumnName("started_at").HasDefaultValueSql("now()");
        e.Property(x => x.FinishedAt).HasColumnName("finished_at");
        e.Property(x => x.CancelRequested).HasColumnName("cancel_requested");
        e.Property(x => x.Instance).HasColumnName("instance");
        e.HasOne<DrPlanEntity>().WithMany().HasForeignKey(x => x.PlanId).OnDelete(DeleteBehavior.Cascade);
        e.HasIndex(x => new { x.PlanId, x.StartedAt }, "ix_dr_runs_plan");
        // "ux_dr_runs_one_running" (one running run at a time) is created by the migration in SQL: an expression index.
    }
}

internal sealed class NotificationConfiguration : IEntityTypeConfiguration<NotificationEntity>
{
    public void Configure(EntityTypeBuilder<NotificationEntity> e)
    {
        e.ToTable("notifications", t => t.HasCheckConstraint("ck_notifications_status", "status BETWEEN 1 AND 3"));
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").ValueGeneratedNever();
        e.Property(x => x.Webhook).HasColumnName("webhook");
        e.Property(x => x.Event).HasColumnName("event");
        e.Property(x => x.Payload).HasColumnName("payload");
        e.Property(x => x.Status).HasColumnName("status");
        e.Property(x => x.Attempts).HasColumnName("attempts");
        e.Property(x => x.LastError).HasColumnName("last_error");
        e.Property(x => x.CreatedAt).HasColumnName("created_at").HasDefaultValueSql("now()");
        e.Property(x => x.NextAttemptAt).HasColumnName("next_attempt_at");
        e.Property(x => x.DeliveredAt).HasColumnName("delivered_at");
        e.HasIndex(x => x.NextAttemptAt, "ix_notifications_due").HasFilter("status = 1");
    }
}
