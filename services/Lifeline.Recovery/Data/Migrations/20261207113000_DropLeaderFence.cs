using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Recovery.Data.Migrations
{
    /// <summary>
    /// The recovery leader is elected in <c>lifeline_leaders</c> (ServiceDefaults' leader election, created by the
    /// database migrator) and its writes are fenced by its term there: the Redis lease's token table goes.
    /// </summary>
    public partial class DropLeaderFence : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "leader_fence");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
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
        }
    }
}
