using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Backup.Data.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "backups",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    target = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    status = table.Column<string>(type: "text", nullable: false),
                    parent_id = table.Column<Guid>(type: "uuid", nullable: true),
                    base_id = table.Column<Guid>(type: "uuid", nullable: true),
                    start_lsn = table.Column<long>(type: "bigint", nullable: false),
                    end_lsn = table.Column<long>(type: "bigint", nullable: false),
                    slot_name = table.Column<string>(type: "text", nullable: true),
                    file_name = table.Column<string>(type: "text", nullable: false),
                    size_bytes = table.Column<long>(type: "bigint", nullable: false),
                    sha256 = table.Column<string>(type: "text", nullable: true),
                    started_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    completed_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    duration_ms = table.Column<long>(type: "bigint", nullable: false),
                    server_version = table.Column<string>(type: "text", nullable: true),
                    schema_version = table.Column<string>(type: "text", nullable: true),
                    schema_fingerprint = table.Column<string>(type: "text", nullable: true),
                    change_count = table.Column<long>(type: "bigint", nullable: false),
                    table_checksums = table.Column<string>(type: "jsonb", nullable: false),
                    verification = table.Column<string>(type: "text", nullable: false, defaultValue: "unverified"),
                    verified_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    verification_message = table.Column<string>(type: "text", nullable: true),
                    error = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_backups", x => x.id);
                    table.CheckConstraint("ck_backups_completed", "status <> 'completed' OR (sha256 IS NOT NULL AND completed_at IS NOT NULL)");
                    table.CheckConstraint("ck_backups_parent", "(type = 'full') = (parent_id IS NULL)");
                    table.CheckConstraint("ck_backups_range", "end_lsn >= start_lsn");
                    table.CheckConstraint("ck_backups_status", "status IN ('running','completed','failed')");
                    table.CheckConstraint("ck_backups_type", "type IN ('full','incremental','differential')");
                    table.CheckConstraint("ck_backups_verification", "verification IN ('unverified','passed','failed')");
                    table.ForeignKey(
                        name: "FK_backups_backups_parent_id",
                        column: x => x.parent_id,
                        principalTable: "backups",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "restore_runs",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    target = table.Column<string>(type: "text", nullable: false),
                    backup_id = table.Column<Guid>(type: "uuid", nullable: false),
                    status = table.Column<string>(type: "text", nullable: false),
                    pre_restore_backup_id = table.Column<Guid>(type: "uuid", nullable: true),
                    restored_database = table.Column<string>(type: "text", nullable: true),
                    replaced_database = table.Column<string>(type: "text", nullable: true),
                    started_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    completed_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    error = table.Column<string>(type: "text", nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_restore_runs", x => x.id);
                    table.CheckConstraint("ck_restore_runs_status", "status IN ('running','completed','failed')");
                });

            migrationBuilder.CreateTable(
                name: "schedules",
                columns: table => new
                {
                    target = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<string>(type: "text", nullable: false),
                    cron = table.Column<string>(type: "text", nullable: false),
                    next_run_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    last_run_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: true),
                    last_backup_id = table.Column<Guid>(type: "uuid", nullable: true),
                    last_error = table.Column<string>(type: "text", nullable: true),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_schedules", x => new { x.target, x.type });
                    table.CheckConstraint("ck_schedules_type", "type IN ('full','incremental','differential')");
                });

            migrationBuilder.CreateIndex(
                name: "ix_backups_parent",
                table: "backups",
                column: "parent_id");

            migrationBuilder.CreateIndex(
                name: "ix_backups_target_started",
                table: "backups",
                columns: new[] { "target", "started_at" });

            migrationBuilder.CreateIndex(
                name: "ux_backups_running",
                table: "backups",
                column: "target",
                unique: true,
                filter: "status = 'running'");

            migrationBuilder.CreateIndex(
                name: "ux_restore_runs_running",
                table: "restore_runs",
                column: "target",
                unique: true,
                filter: "status = 'running'");

            migrationBuilder.CreateIndex(
                name: "ix_schedules_next_run",
                table: "schedules",
                column: "next_run_at");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "backups");

            migrationBuilder.DropTable(
                name: "restore_runs");

            migrationBuilder.DropTable(
                name: "schedules");
        }
    }
}
