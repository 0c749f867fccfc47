using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Queue.Data.Migrations
{
    /// <inheritdoc />
    public partial class RecoveryFields : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<long>(
                name: "recovered_token",
                table: "tasks",
                type: "bigint",
                nullable: true);

            migrationBuilder.AddColumn<int>(
                name: "recovery_count",
                table: "tasks",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.AddColumn<Guid>(
                name: "resume_checkpoint_id",
                table: "tasks",
                type: "uuid",
                nullable: true);

            migrationBuilder.AddColumn<string>(
                name: "workflow_id",
                table: "tasks",
                type: "text",
                nullable: true);

            migrationBuilder.CreateIndex(
                name: "ix_tasks_workflow",
                table: "tasks",
                columns: new[] { "tenant_id", "workflow_id", "created_at", "id" },
                descending: new[] { false, false, true, true },
                filter: "workflow_id IS NOT NULL");

            migrationBuilder.AddCheckConstraint(
                name: "ck_tasks_recovered_token",
                table: "tasks",
                sql: "recovered_token IS NULL OR (recovered_token > 0 AND recovered_token <= fencing_token)");

            migrationBuilder.AddCheckConstraint(
                name: "ck_tasks_recovery_count",
                table: "tasks",
                sql: "recovery_count >= 0");

            migrationBuilder.AddCheckConstraint(
                name: "ck_tasks_workflow_id",
                table: "tasks",
                sql: "workflow_id IS NULL OR length(workflow_id) BETWEEN 1 AND 200");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_tasks_workflow",
                table: "tasks");

            migrationBuilder.DropCheckConstraint(
                name: "ck_tasks_recovered_token",
                table: "tasks");

            migrationBuilder.DropCheckConstraint(
                name: "ck_tasks_recovery_count",
                table: "tasks");

            migrationBuilder.DropCheckConstraint(
                name: "ck_tasks_workflow_id",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "recovered_token",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "recovery_count",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "resume_checkpoint_id",
                table: "tasks");

            migrationBuilder.DropColumn(
                name: "workflow_id",
                table: "tasks");
        }
    }
}
