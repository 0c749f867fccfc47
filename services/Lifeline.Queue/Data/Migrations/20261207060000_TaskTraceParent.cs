using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Queue.Data.Migrations
{
    /// <summary>
    /// The enqueue's W3C trace context (traceparent) stored with the task, so the spans of its lease, start,
    /// progress, completion and recovery link back to the trace that created it. Nullable: tasks enqueued before,
    /// or while tracing is off, have none. Adding a nullable column without a default rewrites no row.
    /// </summary>
    public partial class TaskTraceParent : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.AddColumn<string>(name: "trace_parent", table: "tasks", type: "text", nullable: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropColumn(name: "trace_parent", table: "tasks");
        }
    }
}
