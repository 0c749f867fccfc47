using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;
using static Lifeline.Queue.Domain.TaskState;

namespace Lifeline.Queue.Data.Configurations;

internal sealed class TaskEntityConfiguration : IEntityTypeConfiguration<TaskEntity>
{
    public void Configure(EntityTypeBuilder<TaskEntity> e)
    {
        e.ToTable("tasks", t =>
        {
            // The states and their classes come from Domain/TaskState (a test compares them with pg_constraint).
            t.HasCheckConstraint("ck_tasks_status", $"status IN ({SqlList(All)})");
            t.HasCheckConstraint("ck_tasks_backoff", "backoff IN ('exponential','linear','fibonacci','fixed')");
            // Timestamps are tied to states: a lease exists exactly while the task is assigned or running,
            // a running task has started, an ended task has ended, a dead letter has its time.
            t.HasCheckConstraint("ck_tasks_lease_iff_leased",
                $"(status IN ({SqlList(Leased)})) = (lease_expires_at IS NOT NULL)");
            t.HasCheckConstraint("ck_tasks_leased_has_worker",
                $"status NOT IN ({SqlList(Leased)}) OR (assigned_worker_id IS NOT NULL AND assigned_at IS NOT NULL AND fencing_token > 0)");
            t.HasCheckConstraint("ck_tasks_running_started",
                $"status <> {Sql(Running)} OR (started_at IS NOT NULL AND deadline_at IS NOT NULL)");
            t.HasCheckConstraint("ck_tasks_not_started_before_running",
                $"status NOT IN ({SqlList(NotStarted)}) OR (started_at IS NULL AND deadline_at IS NULL)");
            t.HasCheckConstraint("ck_tasks_ended_has_completed_at",
                $"(status IN ({SqlList(Ended)})) = (completed_at IS NOT NULL)");
            t.HasCheckConstraint("ck_tasks_dead_lettered_at", $"(status = {Sql(DeadLettered)}) = (dead_lettered_at IS NOT NULL)");
            t.HasCheckConstraint("ck_tasks_completed_no_error", $"status <> {Sql(Completed)} OR error IS NULL");
            t.HasCheckConstraint("ck_tasks_retry_count", "retry_count >= 0 AND retry_count <= max_retries");
            t.HasCheckConstraint("ck_tasks_max_retries", "max_retries BETWEEN 0 AND 100");
            t.HasCheckConstraint("ck_tasks_timeout", "timeout_seconds > 0");
            t.HasCheckConstraint("ck_tasks_progress", "progress_percent BETWEEN 0 AND 100");
            t.HasCheckConstraint("ck_tasks_unmet_dependencies", "unmet_dependencies >= 0");
            t.HasCheckConstraint("ck_tasks_payload_object", "jsonb_typeof(payload) = 'object'");
            t.HasCheckConstraint("ck_tasks_jitter", "jitter >= 0 AND jitter <= 1");
            t.HasCheckConstraint("ck_tasks_workflow_id", "workflow_id IS NULL OR length(workflow_id) BETWEEN 1 AND 200");
            t.HasCheckConstraint("ck_tasks_recovery_count", "recovery_count >= 0");
            // RecoverTask remembers the token of the lease it recovered (its idempotency key); leases only grow.
            t.HasCheckConstraint("ck_tasks_recovered_token", "recovered_token IS NULL OR (recovered_token > 0 AND recovered_token <= fencing_token)");
        });
        e.HasKey(x => x.Id);
        // Every column is named by the rule TaskRecord's columns follow (TaskSchemaTests compares both with the table).
        foreach (var property in typeof(TaskEntity).GetProperties())
        {
            e.Property(property.Name).HasColumnName(TaskRecord.ColumnOf(property.Name));
        }
        e.Property(x => x.Id).ValueGeneratedNever();
        e.Property(x => x.Payload).HasColumnType("jsonb");
        e.Property(x => x.Result).HasColumnType("jsonb");
        e.Property(x => x.Error).HasColumnType("jsonb");
        e.Property(x => x.FencingToken).HasDefaultValue(0L);
        e.Property(x => x.LeaseSeconds).HasDefaultValue(30d);
        e.Property(x => x.RetryCount).HasDefaultValue(0);
        e.Property(x => x.Jitter).HasDefaultValue(0.1d);
        e.Property(x => x.UnmetDependencies).HasDefaultValue(0);
        e.Property(x => x.HasDependents).HasDefaultValue(false);
        e.Property(x => x.ProgressPercent).HasDefaultValue(0);
        e.Property(x => x.RecoveryCount).HasDefaultValue(0);

        // The lease path: one index whose order is the dequeue order, holding only ready tasks.
        e.HasIndex(x => new { x.TenantId, x.Type, x.Priority, x.CreatedAt, x.Id }, "ix_tasks_ready")
            .IsDescending(false, false, true, false, false)
            .HasFilter($"status = {Sql(Pending)} AND unmet_dependencies = 0");
        // Maintenance: expired leases and overdue attempts.
        e.HasIndex(x => x.LeaseExpiresAt, "ix_tasks_lease_expiry").HasFilter($"status IN ({SqlList(Leased)})");
        e.HasIndex(x => x.DeadlineAt, "ix_tasks_deadline").HasFilter($"status = {Sql(Running)}");
        // Idempotent enqueue.
        e.HasIndex(x => new { x.TenantId, x.IdempotencyKey }, "ux_tasks_idempotency").IsUnique()
            .HasFilter("idempotency_key IS NOT NULL");
        // Listing, newest first, optionally by status; dead letters by when they died.
        e.HasIndex(x => new { x.TenantId, x.CreatedAt, x.Id }, "ix_tasks_list").IsDescending(false, true, true);
        e.HasIndex(x => new { x.TenantId, x.Status, x.CreatedAt, x.Id }, "ix_tasks_list_status").IsDescending(false, false, true, true);
        e.HasIndex(x => new { x.TenantId, x.DeadLetteredAt, x.Id }, "ix_tasks_dead_letters")
            .IsDescending(false, true, true).HasFilter($"status = {Sql(DeadLettered)}");
        // Listing the tasks of a workflow (ListTasks workflow_id), newest first.
        e.HasIndex(x => new { x.TenantId, x.WorkflowId, x.CreatedAt, x.Id }, "ix_tasks_workflow")
            .IsDescending(false, false, true, true).HasFilter("workflow_id IS NOT NULL");
    }
}

internal sealed class TaskDependencyEntityConfiguration : IEntityTypeConfiguration<TaskDependencyEntity>
{
    public void Configure(EntityTypeBuilder<TaskDependencyEntity> e)
    {
        e.ToTable("task_dependencies", t =>
        {
            t.HasCheckConstraint("ck_task_dependencies_type", "type IN ('success','completion','failure')");
            t.HasCheckConstraint("ck_task_dependencies_state", "state IN ('waiting','met','violated')");
            t.HasCheckConstraint("ck_task_dependencies_not_self", "task_id <> depends_on_id");
            t.HasCheckConstraint("ck_task_dependencies_resolved", "(state = 'waiting') = (resolved_at IS NULL)");
        });
        e.HasKey(x => new { x.TaskId, x.DependsOnId });
        e.Property(x => x.TaskId).HasColumnName("task_id");
        e.Property(x => x.DependsOnId).HasColumnName("depends_on_id");
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.Type).HasColumnName("type");
        e.Property(x => x.State).HasColumnName("state");
        e.Property(x => x.CreatedAt).HasColumnName("created_at");
        e.Property(x => x.ResolvedAt).HasColumnName("resolved_at");
        e.HasOne<TaskEntity>().WithMany().HasForeignKey(x => x.TaskId).OnDelete(DeleteBehavior.Cascade);
        e.HasOne<TaskEntity>().WithMany().HasForeignKey(x => x.DependsOnId).OnDelete(DeleteBehavior.Cascade);
        e.HasIndex(x => x.DependsOnId, "ix_task_dependencies_depends_on");
    }
}

internal sealed class TaskHistoryEntityConfiguration : IEntityTypeConfiguration<TaskHistoryEntity>
{
    public void Configure(EntityTypeBuilder<TaskHistoryEntity> e)
    {
        // Column "xid" (xid8, the writing transaction) is added by the migration in SQL: WatchTasks reads
        // the log in commit order with it, which EF Core has no type mapping for.
        e.ToTable("task_history");
        e.HasKey(x => x.Id);
        e.Property(x => x.Id).HasColumnName("id").UseIdentityAlwaysColumn();
        e.Property(x => x.TenantId).HasColumnName("tenant_id");
        e.Property(x => x.TaskId).HasColumnName("task_id");
        e.Property(x => x.TaskType).HasColumnName("task_type");
        e.Property(x => x.EventType).HasColumnName("event_type");
        e.Property(x => x.FromStatus).HasColumnName("from_status");
        e.Property(x => x.ToStatus).HasColumnName("to_status");
        e.Property(x => x.WorkerId).HasColumnName("worker_id");
        e.Property(x => x.FencingToken).HasColumnName("fencing_token");
        e.Property(x => x.Message).HasColumnName("message");
        e.Property(x => x.Details).HasColumnName("details").HasColumnType("jsonb");
        e.Property(x => x.OccurredAt).HasColumnName("occurred_at").HasDefaultValueSql("now()");
        e.HasIndex(x => new { x.TaskId, x.Id }, "ix_task_history_task");
        // No foreign key to tasks: every history row is written by the statement that changes its task (a CTE over
        // the changed rows), so it cannot name a missing task, and tasks are never deleted one by one. The key's
        // check was a trigger and a row lock per history row — on every transition of every task.
    }
}
