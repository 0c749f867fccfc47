using System.Collections.Concurrent;
using Lifeline.ServiceDefaults.Postgres;
using Lifeline.Testing;
using Npgsql;

namespace Lifeline.ServiceDefaults.Tests;

/// <summary>
/// Group commit against a real PostgreSQL: concurrent callers share transactions, each gets its own answer,
/// one caller's bad item harms no one else, a cancelled caller is dropped, a stuck store does not hold callers forever.
/// </summary>
public sealed class GroupCommitTests : IAsyncLifetime
{
    private PostgresServer postgres = null!;
    private string database = null!;
    private NpgsqlDataSource dataSource = null!;

    public async Task InitializeAsync()
    {
        postgres = await PostgresServer.GetAsync();
        database = await postgres.CreateDatabaseAsync("groupcommit");
        dataSource = NpgsqlDataSource.Create(database);
        await using var create = dataSource.CreateCommand("CREATE TABLE items (value int PRIMARY KEY, xid xid8 NOT NULL DEFAULT pg_current_xact_id())");
        await create.ExecuteNonQueryAsync();
    }

    public async Task DisposeAsync()
    {
        await dataSource.DisposeAsync();
        await postgres.DropDatabaseAsync(database);
    }

    /// <summary>Inserts the group's values in one transaction: text cast to int, so "x" breaks the statement; a duplicate is refused alone.</summary>
    private async Task<IReadOnlyList<GroupOutcome<long>>> InsertAsync(IReadOnlyList<string> items, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await using var command = new NpgsqlCommand(
            "INSERT INTO items (value) SELECT v::int FROM unnest(@values::text[]) v ON CONFLICT DO NOTHING RETURNING value", connection, tx);
        command.Parameters.AddWithValue("values", items.ToArray());
        var inserted = new HashSet<long>();
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                inserted.Add(reader.GetInt32(0));
            }
        }
        await tx.CommitAsync(ct);
        return items.Select(i => inserted.Contains(long.Parse(i))
            ? GroupOutcome<long>.Of(long.Parse(i) * 2)
            : GroupOutcome<long>.Refused(new InvalidOperationException($"{i} exists"))).ToList();
    }

    private async Task<long> TransactionsAsync()
    {
        await using var count = dataSource.CreateCommand("SELECT count(DISTINCT xid::text) FROM items");
        return (long)(await count.ExecuteScalarAsync())!;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_callers_share_transactions_and_each_gets_its_own_answer()
    {
        var groups = new ConcurrentBag<int>();
        var commit = new GroupCommit<string, long>((items, ct) =>
        {
            groups.Add(items.Count);
            return InsertAsync(items, ct);
        }, new GroupCommitPolicy(MaxItems: 64, MaxConcurrentGroups: 2));

        var answers = await Task.WhenAll(Enumerable.Range(1, 400).Select(i => Task.Run(() => commit.RunAsync(i.ToString(), CancellationToken.None))));

        Assert.Equal(Enumerable.Range(1, 400).Select(i => i * 2L), answers);
        Assert.Equal(400, groups.Sum());
        Assert.True(groups.Count < 400, $"every call ran alone ({groups.Count} groups)");
        Assert.All(groups, size => Assert.InRange(size, 1, 64));
        Assert.Equal(groups.Count, await TransactionsAsync());
        // A repeat is refused alone, with its own reason.
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => commit.RunAsync("7", CancellationToken.None));
        Assert.Equal("7 exists", refused.Message);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_item_that_breaks_the_statement_fails_alone_and_the_others_commit()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var first = true;
        var commit = new GroupCommit<string, long>(async (items, ct) =>
        {
            if (first)
            {
                // Hold the first group so the next callers gather into one group with the bad item among them.
                first = false;
                await release.Task;
            }
            return await InsertAsync(items, ct);
        }, new GroupCommitPolicy(MaxConcurrentGroups: 1));

        var holder = commit.RunAsync("1000", CancellationToken.None);
        await Task.Delay(100);
        var calls = new[] { "1", "2", "x", "3", "4" }.Select(v => (v, commit.RunAsync(v, CancellationToken.None))).ToList();
        release.SetResult();

        Assert.Equal(2000, await holder);
        foreach (var (value, call) in calls)
        {
            if (value == "x")
            {
                var error = await Assert.ThrowsAsync<PostgresException>(() => call);
                Assert.Equal(PostgresErrorCodes.InvalidTextRepresentation, error.SqlState);
            }
            else
            {
                Assert.Equal(long.Parse(value) * 2, await call);
            }
        }
        await using var count = dataSource.CreateCommand("SELECT array_agg(value ORDER BY value)::text FROM items");
        Assert.Equal("{1,2,3,4,1000}", await count.ExecuteScalarAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_caller_that_cancels_while_waiting_is_dropped_and_its_item_never_written()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var seen = new ConcurrentBag<string>();
        var commit = new GroupCommit<string, long>(async (items, ct) =>
        {
            foreach (var item in items)
            {
                seen.Add(item);
            }
            if (items.Contains("1"))
            {
                await release.Task;
            }
            return await InsertAsync(items, ct);
        }, new GroupCommitPolicy(MaxConcurrentGroups: 1));

        var holder = commit.RunAsync("1", CancellationToken.None);
        await Task.Delay(100);
        using var cancel = new CancellationTokenSource();
        var cancelled = commit.RunAsync("2", cancel.Token);
        var kept = commit.RunAsync("3", CancellationToken.None);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        release.SetResult();

        Assert.Equal(2, await holder);
        Assert.Equal(6, await kept);
        Assert.DoesNotContain("2", seen);
        await using var count = dataSource.CreateCommand("SELECT count(*) FROM items WHERE value = 2");
        Assert.Equal(0L, await count.ExecuteScalarAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Never_more_groups_in_flight_than_allowed_and_a_lone_call_after_the_rush_runs_alone()
    {
        var inFlight = 0;
        var most = 0;
        var sizes = new ConcurrentQueue<int>();
        var commit = new GroupCommit<string, long>(async (items, ct) =>
        {
            var now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref most, now);
            sizes.Enqueue(items.Count);
            try
            {
                await Task.Delay(5, ct);
                return await InsertAsync(items, ct);
            }
            finally
            {
                Interlocked.Decrement(ref inFlight);
            }
        }, new GroupCommitPolicy(MaxItems: 10, MaxConcurrentGroups: 3));

        await Task.WhenAll(Enumerable.Range(1, 300).Select(i => Task.Run(() => commit.RunAsync(i.ToString(), CancellationToken.None))));
        Assert.InRange(most, 1, 3);
        Assert.All(sizes, s => Assert.InRange(s, 1, 10));

        sizes.Clear();
        Assert.Equal(2002, await commit.RunAsync("1001", CancellationToken.None));
        Assert.Equal([1], sizes);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_store_that_does_not_answer_fails_the_group_at_its_time_limit_and_the_next_group_commits()
    {
        var hang = true;
        var commit = new GroupCommit<string, long>(async (items, ct) =>
        {
            if (hang)
            {
                hang = false;
                // pg_sleep stands for a black-holed connection: the group's time limit cancels it.
                await using var sleep = dataSource.CreateCommand("SELECT pg_sleep(30)");
                await sleep.ExecuteNonQueryAsync(ct);
            }
            return await InsertAsync(items, ct);
        }, new GroupCommitPolicy(GroupTimeout: TimeSpan.FromSeconds(1)));

        var started = DateTime.UtcNow;
        var error = await Assert.ThrowsAsync<TimeoutException>(() => commit.RunAsync("1", CancellationToken.None));
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(10));
        Assert.Contains("did not commit", error.Message, StringComparison.Ordinal);
        Assert.Equal(4, await commit.RunAsync("2", CancellationToken.None));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_lost_connection_fails_every_caller_of_the_group_once_without_repeating_items_alone()
    {
        var calls = 0;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var commit = new GroupCommit<string, long>(async (items, ct) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                await release.Task;
                return await InsertAsync(items, ct);
            }
            // A real broken connection: the server ends this backend while the statement runs.
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            await using var kill = new NpgsqlCommand("SELECT pg_terminate_backend(pg_backend_pid())", connection);
            await kill.ExecuteNonQueryAsync(ct);
            return [];
        }, new GroupCommitPolicy(MaxConcurrentGroups: 1));

        var holder = commit.RunAsync("1", CancellationToken.None);
        await Task.Delay(100);
        var group = Enumerable.Range(2, 5).Select(i => commit.RunAsync(i.ToString(), CancellationToken.None)).ToList();
        release.SetResult();
        await holder;
        foreach (var call in group)
        {
            await Assert.ThrowsAnyAsync<NpgsqlException>(() => call);
        }
        Assert.Equal(2, calls); // the holder's group and the broken one: no item repeated alone against a dead store
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
