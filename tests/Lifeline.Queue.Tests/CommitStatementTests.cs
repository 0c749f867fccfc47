using Lifeline.Queue.Leasing;
using Npgsql;

namespace Lifeline.Queue.Tests;

/// <summary>
/// The lease and the completion-with-refill send their last statement and the transaction's COMMIT in one batch
/// (<see cref="TaskLeaser.CommitStatement"/>). That is only safe if a statement that fails in that batch leaves the
/// transaction's earlier writes uncommitted and the pooled connection clean, and if a batch that succeeds has committed
/// and ended the transaction its dispose then finds over. These tests pin both.
/// </summary>
public sealed class CommitStatementTests(QueueEnvironment env) : IClassFixture<QueueEnvironment>
{
    private async Task<string> ScratchTableAsync()
    {
        var table = $"commit_probe_{Guid.NewGuid():N}";
        await using var connection = await OpenAsync();
        await using var create = new NpgsqlCommand($"CREATE TABLE {table} (id int PRIMARY KEY)", connection);
        await create.ExecuteNonQueryAsync();
        return table;
    }

    /// <summary>Runs <c>INSERT … VALUES (<paramref name="id"/>)</c> in the transaction: a round trip of its own.</summary>
    private static async Task InsertAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string table, int id)
    {
        await using var insert = new NpgsqlCommand($"INSERT INTO {table} VALUES ({id})", connection, tx);
        await insert.ExecuteNonQueryAsync();
    }

    private async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(env.DatabaseConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_statement_that_fails_in_the_commit_batch_leaves_the_whole_transaction_uncommitted()
    {
        var table = await ScratchTableAsync();
        await using var connection = await OpenAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await InsertAsync(connection, tx, table, 1);
            // The batch's statement violates the key: the COMMIT behind it must not run.
            await using var batch = TaskLeaser.Batch(connection, tx, new NpgsqlBatchCommand($"INSERT INTO {table} VALUES (1)"), TaskLeaser.CommitStatement());
            var error = await Assert.ThrowsAsync<PostgresException>(() => batch.ExecuteNonQueryAsync());
            Assert.Equal(PostgresErrorCodes.UniqueViolation, error.SqlState);
        }
        Assert.Equal(0L, await env.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
        // The connection is usable again, outside any transaction.
        await using var check = new NpgsqlCommand("SELECT 1", connection);
        Assert.Equal(1, await check.ExecuteScalarAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_commit_batch_commits_the_transaction_and_ends_it()
    {
        var table = await ScratchTableAsync();
        await using var connection = await OpenAsync();
        await using (var tx = await connection.BeginTransactionAsync())
        {
            await InsertAsync(connection, tx, table, 1);
            await using var batch = TaskLeaser.Batch(connection, tx, new NpgsqlBatchCommand($"INSERT INTO {table} VALUES (2)"), TaskLeaser.CommitStatement());
            await batch.ExecuteNonQueryAsync();
            // Committed before the transaction object is disposed (its dispose must not roll anything back).
            Assert.Equal(2L, await env.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
        }
        Assert.Equal(2L, await env.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
        // A new transaction can begin on the same connection: the old one is over.
        await using var next = await connection.BeginTransactionAsync();
        await InsertAsync(connection, next, table, 3);
        await next.RollbackAsync();
        Assert.Equal(2L, await env.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }
}
