using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Lifeline.Queue.Data.Migrations
{
    /// <summary>
    /// <c>lifeline_require(ok, reason)</c>: raises SQLSTATE <c>LL001</c> with the reason unless <c>ok</c> is true. A batch
    /// that commits in its last statement uses it to stop itself when an earlier statement's outcome needs the service to
    /// look before anything commits (a completion in <c>CompleteAndRefill</c>'s one round trip that was refused, or whose
    /// task has dependents): the error aborts the transaction, PostgreSQL skips the rest of the batch with its COMMIT, and
    /// the service applies the group again the long way. The model does not change.
    /// </summary>
    public partial class BatchRequirement : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("""
                CREATE OR REPLACE FUNCTION lifeline_require(ok boolean, reason text) RETURNS boolean
                LANGUAGE plpgsql AS $$
                BEGIN
                    IF ok IS NOT TRUE THEN
                        RAISE EXCEPTION USING ERRCODE = 'LL001', MESSAGE = reason;
                    END IF;
                    RETURN true;
                END
                $$;
                """);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.Sql("DROP FUNCTION IF EXISTS lifeline_require(boolean, text);");
        }
    }
}
