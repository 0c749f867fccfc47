using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Recovery.Data.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "check_runs",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    scope = table.Column<string>(type: "text", nullable: false),
                    started_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    finished_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    summary = table.Column<string>(type: "jsonb", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_check_runs", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "dr_plans",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    description = table.Column<string>(type: "text", nullable: false),
                    steps = table.Column<string>(type: "jsonb", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_dr_plans", x => x.id);
                });

            migrationBuilder.CreateTable(
                name: "leader_fence",
                columns: table => new
                {
                    id = table.Column<int>(type: "integer", nullable: false),
                    token = table.Column<long>(type: "bigint", nullable: false),
                    instance = table.Column<string>(type: "text", nullable: false),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_leader_fence", x => x.id);
                    table.CheckConstraint("ck_leader_fence_single", "id = 1");
                });

            migrationBuilder.CreateTable(
                name: "notifications",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    webhook = table.Column<string>(type: "text", nullable: false),
                    @event = table.Column<string>(name: "event", type: "text", nullable: false),
                    payload = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<int>(type: "integer", nullable: false),
                    attempts = table.Column<int>(type: "integer", nullable: false),
                    last_error = table.Column<string>(type: "text", nullable: true),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    next_attempt_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    delivered_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_notifications", x => x.id);
                    table.CheckConstraint("ck_notifications_status", "status BETWEEN 1 AND 3");
                });

            migrationBuilder.CreateTable(
                name: "recovery_actions",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    task_type = table.Column<string>(type: "text", nullable: false),
                    workflow_id = table.Column<string>(type: "text", nullable: false),
                    previous_status = table.Column<string>(type: "text", nullable: false),
                    new_status = table.Column<string>(type: "text", nullable: false),
                    action = table.Column<int>(type: "integer", nullable: false),
                    trigger = table.Column<int>(type: "integer", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    worker_id = table.Column<string>(type: "text", nullable: false),
                    checkpoint_id = table.Column<Guid>(type: "uuid", nullable: true),
                    fencing_token = table.Column<long>(type: "bigint", nullable: false),
                    detected_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    recovered_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    succeeded = table.Column<bool>(type: "boolean", nullable: false),
                    error = table.Column<string>(type: "text", nullable: true),
                    leader_token = table.Column<long>(type: "bigint", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_recovery_actions", x => x.id);
                    table.CheckConstraint("ck_recovery_actions_action", "action BETWEEN 1 AND 4");
                });

            migrationBuilder.CreateTable(
                name: "recovery_plans",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    error_code = table.Column<string>(type: "text", nullable: false),
                    category = table.Column<int>(type: "integer", nullable: false),
                    severity = table.Column<int>(type: "integer", nullable: false),
                    error_message = table.Column<string>(type: "text", nullable: false),
                    task_id = table.Column<Guid>(type: "uuid", nullable: true),
                    workflow_id = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<int>(type: "integer", nullable: false),
                    requires_approval = table.Column<bool>(type: "boolean", nullable: false),
                    approved_by = table.Column<string>(type: "text", nullable: true),
                    approved_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    source = table.Column<string>(type: "text", nullable: false),
                    actions = table.Column<string>(type: "jsonb", nullable: false),
                    next_steps = table.Column<string[]>(type: "text[]", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    xmin = table.Column<uint>(type: "xid", rowVersion: true, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_recovery_plans", x => x.id);
                    table.CheckConstraint("ck_recovery_plans_category", "category BETWEEN 1 AND 7");
                    table.CheckConstraint("ck_recovery_plans_status", "status BETWEEN 1 AND 8");
                });

            migrationBuilder.CreateTable(
                name: "system_states",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    status = table.Column<int>(type: "integer", nullable: false),
                    version = table.Column<string>(type: "text", nullable: false),
                    worker_pool = table.Column<string>(type: "jsonb", nullable: false),
                    queue_counts = table.Column<string>(type: "jsonb", nullable: false),
                    metrics = table.Column<string>(type: "jsonb", nullable: false),
                    configuration = table.Column<string>(type: "jsonb", nullable: false),
                    reason = table.Column<string>(type: "text", nullable: false),
                    message = table.Column<string>(type: "text", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "clock_timestamp()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_system_states", x => x.id);
                    table.CheckConstraint("ck_system_states_status", "status BETWEEN 1 AND 5");
                });

            migrationBuilder.CreateTable(
                name: "watch_cursors",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    source = table.Column<string>(type: "text", nullable: false),
                    position = table.Column<string>(type: "text", nullable: false),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_watch_cursors", x => new { x.tenant_id, x.source });
                });

            migrationBuilder.CreateTable(
                name: "consistency_issues",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    run_id = table.Column<Guid>(type: "uuid", nullable: false),
                    check_name = table.Column<string>(type: "text", nullable: false),
                    severity = table.Column<int>(type: "integer", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    subject = table.Column<string>(type: "text", nullable: false),
                    description = table.Column<string>(type: "text", nullable: false),
                    fixable = table.Column<bool>(type: "boolean", nullable: false),
                    @fixed = table.Column<bool>(name: "fixed", type: "boolean", nullable: false),
                    fix_result = table.Column<string>(type: "text", nullable: true),
                    details = table.Column<string>(type: "jsonb", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    fixed_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_consistency_issues", x => x.id);
                    table.ForeignKey(
                        name: "FK_consistency_issues_check_runs_run_id",
                        column: x => x.run_id,
                        principalTable: "check_runs",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "dr_runs",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    plan_id = table.Column<Guid>(type: "uuid", nullable: false),
                    status = table.Column<int>(type: "integer", nullable: false),
                    steps = table.Column<string>(type: "jsonb", nullable: false),
                    started_by = table.Column<string>(type: "text", nullable: false),
                    started_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    finished_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    cancel_requested = table.Column<bool>(type: "boolean", nullable: false),
                    instance = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_dr_runs", x => x.id);
                    table.CheckConstraint("ck_dr_runs_status", "status BETWEEN 1 AND 5");
                    table.ForeignKey(
                        name: "FK_dr_runs_dr_plans_plan_id",
                        column: x => x.plan_id,
                        principalTable: "dr_plans",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_consistency_issues_run",
                table: "consistency_issues",
                column: "run_id");

            migrationBuilder.CreateIndex(
                name: "ux_dr_plans_name",
                table: "dr_plans",
                column: "name",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_dr_runs_plan",
                table: "dr_runs",
                columns: new[] { "plan_id", "started_at" });

            migrationBuilder.CreateIndex(
                name: "ix_notifications_due",
                table: "notifications",
                column: "next_attempt_at",
                filter: "status = 1");

            migrationBuilder.CreateIndex(
                name: "ix_recovery_actions_task",
                table: "recovery_actions",
                columns: new[] { "task_id", "recovered_at" });

            migrationBuilder.CreateIndex(
                name: "ix_recovery_actions_time",
                table: "recovery_actions",
                column: "recovered_at");

            migrationBuilder.CreateIndex(
                name: "ux_recovery_actions_lease",
                table: "recovery_actions",
                columns: new[] { "tenant_id", "task_id", "fencing_token" },
                unique: true,
                filter: "succeeded");

            migrationBuilder.CreateIndex(
                name: "ix_recovery_plans_status",
                table: "recovery_plans",
                columns: new[] { "status", "created_at" });

            migrationBuilder.CreateIndex(
                name: "ix_system_states_time",
                table: "system_states",
                column: "created_at");

            // One disaster-recovery run at a time across all instances: a second running row violates this.
            migrationBuilder.Sql("CREATE UNIQUE INDEX ux_dr_runs_one_running ON dr_runs ((true)) WHERE status = 1;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "consistency_issues");

            migrationBuilder.DropTable(
                name: "dr_runs");

            migrationBuilder.DropTable(
                name: "leader_fence");

            migrationBuilder.DropTable(
                name: "notifications");

            migrationBuilder.DropTable(
                name: "recovery_actions");

            migrationBuilder.DropTable(
                name: "recovery_plans");

            migrationBuilder.DropTable(
                name: "system_states");

            migrationBuilder.DropTable(
                name: "watch_cursors");

            migrationBuilder.DropTable(
                name: "check_runs");

            migrationBuilder.DropTable(
                name: "dr_plans");
        }
    }
}
