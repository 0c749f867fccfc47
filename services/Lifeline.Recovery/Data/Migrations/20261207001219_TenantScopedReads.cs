using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Recovery.Data.Migrations
{
    /// <inheritdoc />
    public partial class TenantScopedReads : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_recovery_plans_status",
                table: "recovery_plans");

            migrationBuilder.CreateIndex(
                name: "ix_recovery_plans_tenant",
                table: "recovery_plans",
                columns: new[] { "tenant_id", "created_at", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_recovery_plans_tenant_status",
                table: "recovery_plans",
                columns: new[] { "tenant_id", "status", "created_at", "id" });

            migrationBuilder.CreateIndex(
                name: "ix_recovery_actions_tenant",
                table: "recovery_actions",
                columns: new[] { "tenant_id", "recovered_at", "id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ix_recovery_plans_tenant",
                table: "recovery_plans");

            migrationBuilder.DropIndex(
                name: "ix_recovery_plans_tenant_status",
                table: "recovery_plans");

            migrationBuilder.DropIndex(
                name: "ix_recovery_actions_tenant",
                table: "recovery_actions");

            migrationBuilder.CreateIndex(
                name: "ix_recovery_plans_status",
                table: "recovery_plans",
                columns: new[] { "status", "created_at" });
        }
    }
}
