using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Checkpoint.Data.Migrations
{
    /// <inheritdoc />
    public partial class InitialSchema : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "artifact_chunks",
                columns: table => new
                {
                    blob_id = table.Column<Guid>(type: "uuid", nullable: false),
                    seq = table.Column<int>(type: "integer", nullable: false),
                    data = table.Column<byte[]>(type: "bytea", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_artifact_chunks", x => new { x.blob_id, x.seq });
                });

            migrationBuilder.CreateTable(
                name: "artifacts",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    sha256 = table.Column<string>(type: "text", nullable: false),
                    blob_id = table.Column<Guid>(type: "uuid", nullable: false),
                    size = table.Column<long>(type: "bigint", nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    content_type = table.Column<string>(type: "text", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    last_used_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_artifacts", x => new { x.tenant_id, x.sha256 });
                    table.CheckConstraint("ck_artifacts_sha", "sha256 ~ '^[0-9a-f]{64}$'");
                });

            migrationBuilder.CreateTable(
                name: "workflows",
                columns: table => new
                {
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    workflow_id = table.Column<string>(type: "text", nullable: false),
                    head_id = table.Column<Guid>(type: "uuid", nullable: true),
                    head_sequence = table.Column<long>(type: "bigint", nullable: false),
                    next_sequence = table.Column<long>(type: "bigint", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()"),
                    updated_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_workflows", x => new { x.tenant_id, x.workflow_id });
                    table.CheckConstraint("ck_workflows_sequence", "next_sequence > head_sequence");
                });

            migrationBuilder.CreateTable(
                name: "checkpoints",
                columns: table => new
                {
                    id = table.Column<Guid>(type: "uuid", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false),
                    workflow_id = table.Column<string>(type: "text", nullable: false),
                    sequence = table.Column<long>(type: "bigint", nullable: false),
                    name = table.Column<string>(type: "text", nullable: false),
                    type = table.Column<int>(type: "integer", nullable: false),
                    phase = table.Column<int>(type: "integer", nullable: false),
                    agent = table.Column<string>(type: "text", nullable: false),
                    description = table.Column<string>(type: "text", nullable: false),
                    tags = table.Column<string[]>(type: "text[]", nullable: false),
                    is_valid = table.Column<bool>(type: "boolean", nullable: false),
                    invalid_reason = table.Column<string>(type: "text", nullable: true),
                    parent_id = table.Column<Guid>(type: "uuid", nullable: true),
                    checksum = table.Column<string>(type: "text", nullable: false),
                    size_bytes = table.Column<long>(type: "bigint", nullable: false),
                    storage_kind = table.Column<int>(type: "integer", nullable: false),
                    base_id = table.Column<Guid>(type: "uuid", nullable: true),
                    chain_depth = table.Column<int>(type: "integer", nullable: false),
                    stored_bytes = table.Column<long>(type: "bigint", nullable: false),
                    payload = table.Column<byte[]>(type: "bytea", nullable: false),
                    created_at = table.Column<DateTime>(type: "timestamp with time zone", nullable: false, defaultValueSql: "now()")
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_checkpoints", x => x.id);
                    table.CheckConstraint("ck_checkpoints_checksum", "checksum ~ '^[0-9a-f]{64}$'");
                    table.CheckConstraint("ck_checkpoints_storage", "(storage_kind = 1 AND base_id IS NULL AND chain_depth = 0) OR (storage_kind = 2 AND base_id IS NOT NULL AND chain_depth > 0)");
                    table.CheckConstraint("ck_checkpoints_type", "type BETWEEN 1 AND 9");
                    table.ForeignKey(
                        name: "FK_checkpoints_checkpoints_base_id",
                        column: x => x.base_id,
                        principalTable: "checkpoints",
                        principalColumn: "id");
                    table.ForeignKey(
                        name: "FK_checkpoints_workflows_tenant_id_workflow_id",
                        columns: x => new { x.tenant_id, x.workflow_id },
                        principalTable: "workflows",
                        principalColumns: new[] { "tenant_id", "workflow_id" },
                        onDelete: ReferentialAction.Restrict);
                });

            migrationBuilder.CreateTable(
                name: "checkpoint_artifacts",
                columns: table => new
                {
                    checkpoint_id = table.Column<Guid>(type: "uuid", nullable: false),
                    sha256 = table.Column<string>(type: "text", nullable: false),
                    tenant_id = table.Column<string>(type: "text", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_checkpoint_artifacts", x => new { x.checkpoint_id, x.sha256 });
                    table.ForeignKey(
                        name: "FK_checkpoint_artifacts_checkpoints_checkpoint_id",
                        column: x => x.checkpoint_id,
                        principalTable: "checkpoints",
                        principalColumn: "id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "ux_artifacts_blob",
                table: "artifacts",
                column: "blob_id",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "ix_checkpoint_artifacts_sha",
                table: "checkpoint_artifacts",
                columns: new[] { "tenant_id", "sha256" });

            migrationBuilder.CreateIndex(
                name: "ix_checkpoints_base",
                table: "checkpoints",
                column: "base_id",
                filter: "base_id IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ix_checkpoints_parent",
                table: "checkpoints",
                column: "parent_id",
                filter: "parent_id IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ux_checkpoints_sequence",
                table: "checkpoints",
                columns: new[] { "tenant_id", "workflow_id", "sequence" },
                unique: true);

            // Payloads and chunks are compressed (or arbitrary) bytes already: store them out of line
            // without PostgreSQL's own compression attempt.
            migrationBuilder.Sql("ALTER TABLE checkpoints ALTER COLUMN payload SET STORAGE EXTERNAL;");
            migrationBuilder.Sql("ALTER TABLE artifact_chunks ALTER COLUMN data SET STORAGE EXTERNAL;");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "artifact_chunks");

            migrationBuilder.DropTable(
                name: "artifacts");

            migrationBuilder.DropTable(
                name: "checkpoint_artifacts");

            migrationBuilder.DropTable(
                name: "checkpoints");

            migrationBuilder.DropTable(
                name: "workflows");
        }
    }
}
