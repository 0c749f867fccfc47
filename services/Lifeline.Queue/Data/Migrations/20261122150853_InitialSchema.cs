using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace Lifeline.Queue.Data.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "tasks",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<string>(type: "text", nullable: false),
                    priority = table.Column<int>(type: "integer", nullable: false),
                    payload = table.Column<string>(type: "jsonb", nullable: false),
                    result = table.Column<string>(type: "jsonb", nullable: true),
                    error = table.Column<string>(type: "jsonb", nullable: true),
                    assigned_worker_id = table.Column<string>(type: "text", nullable: true),
                    fencing_token = table.Column<long>(type: "bigint", nullable: false, defaultValue: 0L),
                    lease_expires_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    lease_seconds = table.Column<double>(type: "double precision", nullable: false, defaultValue: 30.0),
                    deadline_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    assigned_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    started_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    completed_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    dead_lettered_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    retry_count = table.Column<int>(type: "integer", nullable: false, defaultValue: 0),
                    max_retries = table.Column<int>(type: "integer", nullable: false),
                    timeout_seconds = table.Column<int>(type: "integer", nullable: false),
                    not_before = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    idempotency_key = table.Column<string>(type: "text", nullable: true),
                    backoff = table.Column<string>(type: "text", nullable: false),
                    initial_interval_ms = table.Column<long>(type: "bigint", nullable: false),
                    maximum_interval_ms = table.Column<long>(type: "bigint", nullable: false),
                    jitter = table.Column<double>(type: "double precision", nullable: false, defaultValue: 0.10000000000000001),
                    unmet_dependencies = table.Column<int>(type: "integer", nullable: false, defaultValue: 0),
                    has_dependents = table.Column<bool>(type: "boolean", nullable: false, defaultValue: false),
                    progress_percent = table.Column<int>(type: "integer", nullable: false, defaultValue: 0),
                    progress_message = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_tasks", x => x.id);
                    table.CheckConstraint("ck_tasks_backoff", "backoff IN ('exponential','linear','fibonacci','fixed')");
                    table.CheckConstraint("ck_tasks_completed_no_error", "status <> 'completed' OR error IS NULL");
                    table.CheckConstraint("ck_tasks_dead_lettered_at", "(status = 'dead_lettered') = (dead_lettered_at IS NOT NULL)");
                    table.CheckConstraint("ck_tasks_ended_has_completed_at", "(status IN ('completed','failed','cancelled','timeout','dead_lettered')) = (completed_at IS NOT NULL)");
                    table.CheckConstraint("ck_tasks_jitter", "jitter >= 0 AND jitter <= 1");
                    table.CheckConstraint("ck_tasks_lease_iff_leased", "(status IN ('assigned','running')) = (lease_expires_at IS NOT NULL)");
                    table.CheckConstraint("ck_tasks_leased_has_worker", "status NOT IN ('assigned','running') OR (assigned_worker_id IS NOT NULL AND assigned_at IS NOT NULL AND fencing_token > 0)");
                    table.CheckConstraint("ck_tasks_max_retries", "max_retries BETWEEN 0 AND 100");
                    table.CheckConstraint("ck_tasks_not_started_before_running", "status NOT IN ('pending','assigned') OR (started_at IS NULL AND deadline_at IS NULL)");
                    table.CheckConstraint("ck_tasks_payload_object", "jsonb_typeof(payload) = 'object'");
                    table.CheckConstraint("ck_tasks_progress", "progress_percent BETWEEN 0 AND 100");
                    table.CheckConstraint("ck_tasks_retry_count", "retry_count >= 0 AND retry_count <= max_retries");
                    table.CheckConstraint("ck_tasks_running_started", "status <> 'running' OR (started_at IS NOT NULL AND deadline_at IS NOT NULL)");
                    table.CheckConstraint("ck_tasks_status", "status IN ('pending','assigned','running','completed','failed','cancelled','timeout','dead_lettered')");
                    table.CheckConstraint("ck_tasks_timeout", "timeout_seconds > 0");
                    table.CheckConstraint("ck_tasks_unmet_dependencies", "unmet_dependencies >= 0");
                });

            migrationBuilder.CreateTable(
                name: "task_dependencies",
                columns: table => new
                {
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    depends_on_id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    state = table.Column<string>(type: "text", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    resolved_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_task_dependencies", x => new { x.task_id, x.depends_on_id });
                    table.CheckConstraint("ck_task_dependencies_not_self", "task_id <> depends_on_id");
                    table.CheckConstraint("ck_task_dependencies_resolved", "(state = 'waiting') = (resolved_at IS NULL)");
                    table.CheckConstraint("ck_task_dependencies_state", "state IN ('waiting','met','violated')");
                    table.CheckConstraint("ck_task_dependencies_type", "type IN ('success','completion','failure')");
                    table.ForeignKey(
                        name: "FK_task_dependencies_tasks_depends_on_id",
                        column: x => x.depends_on_id,
                        principalTable: "tasks",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                    table.ForeignKey(
                        name: "FK_task_dependencies_tasks_task_id",
                        column: x => x.task_id,
                        principalTable: "tasks",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "task_history",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    task_type = table.Column<string>(type: "text", nullable: false),
                    event_type = table.Column<string>(type: "text", nullable: false),
                    from_status = table.Column<string>(type: "text", nullable: true),
                    to_status = table.Column<string>(type: "text", nullable: false),
                    worker_id = table.Column<string>(type: "text", nullable: true),
                    fencing_token = table.Column<long>(type: "bigint", nullable: true),
                    message = table.Column<string>(type: "text", nullable: true),
                    details = table.Column<string>(type: "jsonb", nullable: true),
                    occurred_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_task_history", x => x.id);
                    table.ForeignKey(
                        name: "FK_task_history_tasks_task_id",
                        column: x => x.task_id,
                        principalTable: "tasks",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_task_dependencies_depends_on",
                table: "task_dependencies",
                column: "depends_on_id");

            migrationBuilder.CreateIndex(
                name: "ix_task_history_task",
                table: "task_history",
                columns: new[] { "task_id", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_dead_letters",
                table: "tasks",
                columns: new[] { "tenant_id", "dead_lettered_at", "id" },
                descending: new[] { false, true, true },
                filter: "status = 'dead_lettered'");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_deadline",
                table: "tasks",
                column: "deadline_at",
                filter: "status = 'running'");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_lease_expiry",
                table: "tasks",
                column: "lease_expires_at",
                filter: "status IN ('assigned','running')");

            migrationBuilder.CreateIndex(
                name: "ix_tasks_list",
                table: "tasks",
                columns: new[] { "tenant_id", "created_at", "id" },
                descending: new[] { false, true, true });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_list_status",
                table: "tasks",
                columns: new[] { "tenant_id", "status", "created_at", "id" },
                descending: new[] { false, false, true, true });

            migrationBuilder.CreateIndex(
                name: "ix_tasks_ready",
                table: "tasks",
                columns: new[] { "tenant_id", "type", "priority", "created_at", "id" },
                descending: new[] { false, false, true, false, false },
                filter: "status = 'pending' AND unmet_dependencies = 0");

            migrationBuilder.CreateIndex(
                name: "ux_tasks_idempotency",
                table: "tasks",
                columns: new[] { "tenant_id", "idempotency_key" },
                unique: true,
                filter: "idempotency_key IS NOT NULL");

            // WatchTasks reads the history in commit order: the writing transaction's id (xid8) orders it,
            // and pg_snapshot_xmin tells which transactions can no longer add to it.
            migrationBuilder.Sql("ALTER TABLE task_history ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();");
            migrationBuilder.Sql("CREATE INDEX ix_task_history_feed ON task_history (xid, id);");
            // Task rows change often; leave room on each page for HOT updates.
            migrationBuilder.Sql("ALTER TABLE tasks SET (fillfactor = 80);");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "task_dependencies");

            migrationBuilder.DropTable(
                name: "task_history");

            migrationBuilder.DropTable(
                name: "tasks");
        }
    }
}
