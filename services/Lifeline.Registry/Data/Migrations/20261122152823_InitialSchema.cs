using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace Lifeline.Registry.Data.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "worker_events",
                columns: table => new
                {
                    id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityAlwaysColumn),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    worker_id = table.Column<Guid>(type: "uuid", nullable: false),
                    worker_name = table.Column<string>(type: "text", nullable: false),
                    event_type = table.Column<string>(type: "text", nullable: false),
                    session_epoch = table.Column<long>(type: "bigint", nullable: false),
                    running_task_ids = table.Column<string[]>(type: "text[]", nullable: false),
                    message = table.Column<string>(type: "text", nullable: true),
                    occurred_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_worker_events", x => x.id);
                    table.CheckConstraint("ck_worker_events_type", "event_type IN ('registered','lost','recovered','draining','deregistered')");
                });

            migrationBuilder.CreateTable(
                name: "workers",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<string>(type: "text", nullable: false),
                    capabilities = table.Column<string[]>(type: "text[]", nullable: false),
                    metadata = table.Column<string>(type: "jsonb", nullable: false),
                    running_task_ids = table.Column<string[]>(type: "text[]", nullable: false, defaultValueSql: "'{}'"),
                    load = table.Column<double>(type: "double precision", nullable: false, defaultValue: 0.0),
                    last_heartbeat_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    session_epoch = table.Column<long>(type: "bigint", nullable: false),
                    registered_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    deregistered_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_workers", x => x.id);
                    table.CheckConstraint("ck_workers_capabilities", "cardinality(capabilities) > 0");
                    table.CheckConstraint("ck_workers_deregistered_offline", "deregistered_at IS NULL OR status = 'offline'");
                    table.CheckConstraint("ck_workers_epoch", "session_epoch > 0");
                    table.CheckConstraint("ck_workers_status", "status IN ('online','busy','draining','offline','error')");
                    table.CheckConstraint("ck_workers_type", "type IN ('orchestrator','standalone','ci_cd')");
                });

            migrationBuilder.CreateTable(
                name: "circuit_breakers",
                columns: table => new
                {
                    worker_id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    state = table.Column<string>(type: "text", nullable: false),
                    consecutive_failures = table.Column<int>(type: "integer", nullable: false),
                    failure_threshold = table.Column<int>(type: "integer", nullable: false),
                    reset_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    opened_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    xmin = table.Column<uint>(type: "xid", rowVersion: true, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_circuit_breakers", x => x.worker_id);
                    table.CheckConstraint("ck_circuit_breakers_open_has_reset", "(state = 'open') = (reset_at IS NOT NULL)");
                    table.CheckConstraint("ck_circuit_breakers_state", "state IN ('closed','open','half_open')");
                    table.ForeignKey(
                        name: "FK_circuit_breakers_workers_worker_id",
                        column: x => x.worker_id,
                        principalTable: "workers",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "task_outcomes",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    outcome_id = table.Column<string>(type: "text", nullable: false),
                    worker_id = table.Column<Guid>(type: "uuid", nullable: false),
                    task_id = table.Column<Guid>(type: "uuid", nullable: false),
                    task_type = table.Column<string>(type: "text", nullable: false),
                    success = table.Column<bool>(type: "boolean", nullable: false),
                    duration_ms = table.Column<long>(type: "bigint", nullable: false),
                    error_code = table.Column<string>(type: "text", nullable: true),
                    occurred_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    recorded_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_task_outcomes", x => new { x.tenant_id, x.outcome_id });
                    table.CheckConstraint("ck_task_outcomes_duration", "duration_ms >= 0");
                    table.ForeignKey(
                        name: "FK_task_outcomes_workers_worker_id",
                        column: x => x.worker_id,
                        principalTable: "workers",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "worker_stats",
                columns: table => new
                {
                    worker_id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    total = table.Column<long>(type: "bigint", nullable: false),
                    succeeded = table.Column<long>(type: "bigint", nullable: false),
                    failed = table.Column<long>(type: "bigint", nullable: false),
                    total_duration_ms = table.Column<long>(type: "bigint", nullable: false),
                    consecutive_failures = table.Column<int>(type: "integer", nullable: false),
                    last_outcome_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_worker_stats", x => x.worker_id);
                    table.CheckConstraint("ck_worker_stats_totals", "total = succeeded + failed AND total >= 0");
                    table.ForeignKey(
                        name: "FK_worker_stats_workers_worker_id",
                        column: x => x.worker_id,
                        principalTable: "workers",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ix_circuit_breakers_state",
                table: "circuit_breakers",
                columns: new[] { "tenant_id", "state" });

            migrationBuilder.CreateIndex(
                name: "ix_task_outcomes_worker",
                table: "task_outcomes",
                columns: new[] { "worker_id", "occurred_at" });

            migrationBuilder.CreateIndex(
                name: "ix_worker_events_worker",
                table: "worker_events",
                columns: new[] { "worker_id", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_worker_stats_tenant",
                table: "worker_stats",
                column: "tenant_id");

            migrationBuilder.CreateIndex(
                name: "ix_workers_status",
                table: "workers",
                columns: new[] { "tenant_id", "status" });

            migrationBuilder.CreateIndex(
                name: "ux_workers_name",
                table: "workers",
                columns: new[] { "tenant_id", "name" },
                unique: true);

            // WatchWorkers reads the event log in commit order by the writing transaction's id (xid8).
            migrationBuilder.Sql("ALTER TABLE worker_events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();");
            migrationBuilder.Sql("CREATE INDEX ix_worker_events_feed ON worker_events (xid, id);");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "circuit_breakers");

            migrationBuilder.DropTable(
                name: "task_outcomes");

            migrationBuilder.DropTable(
                name: "worker_events");

            migrationBuilder.DropTable(
                name: "worker_stats");

            migrationBuilder.DropTable(
                name: "workers");
        }
    }
}
