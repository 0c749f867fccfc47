using Lifeline.Queue.V1;
using static Lifeline.Queue.Tests.TestData;

namespace Lifeline.Queue.Tests;

/// <summary>
/// A new database's tables get planner statistics within seconds, not at autovacuum's first visit a minute or more
/// later (autovacuum_naptime is 60 s, and it analyzes only after 50 rows + 10 % changed): the queue's statistics
/// keeper analyzes them. Without it the hot statements ran on plans made without statistics — 10× the CPU per task
/// in a new deployment's first minute.
/// </summary>
public sealed class StatisticsTests
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_new_database_gets_statistics_within_seconds_of_its_first_tasks_and_again_after_it_grows()
    {
        var env = new QueueEnvironment();
        await env.InitializeAsync();
        try
        {
            var queue = await env.StartInstanceAsync(new Dictionary<string, string?> { ["Queue:StatisticsInterval"] = "00:00:00.200" });
            var client = queue.Client(); // stopped with the environment
            Assert.Equal(0L, await AnalyzedAsync(env));

            await EnqueueAsync(client, 200);
            var first = await WaitForAnalyzeAsync(env, after: 0);
            // The statistics describe the table: the planner knows the tasks are there and what their statuses are (the
            // keeper may have looked after the first of the two batches of 100: analyzed as soon as there are rows).
            Assert.True(await env.ScalarAsync<long>("SELECT count(*) FROM pg_stats WHERE tablename = 'tasks' AND attname = 'status'") == 1);
            Assert.True(await env.ScalarAsync<float>("SELECT reltuples FROM pg_class WHERE relname = 'tasks'") >= 100);

            // Growing by far more than double: analyzed again at once (not a churn interval later), and the row estimate
            // follows — to at least the 1,200 rows (2 × 100 + 1,000) that trigger it, perhaps while the inserts go on.
            await EnqueueAsync(client, 3000);
            await WaitForAnalyzeAsync(env, after: first);
            Assert.True(await env.ScalarAsync<float>("SELECT reltuples FROM pg_class WHERE relname = 'tasks'") >= 1200);
        }
        finally
        {
            await env.DisposeAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task With_a_5_s_interval_a_new_tables_first_rows_are_still_analyzed_within_a_couple_of_seconds()
    {
        var env = new QueueEnvironment();
        await env.InitializeAsync();
        try
        {
            // A 5 s interval (the default is 1 s): until a table's first statistics the keeper still looks every second (its first minutes).
            var queue = await env.StartInstanceAsync(new Dictionary<string, string?> { ["Queue:StatisticsInterval"] = "00:00:05" });
            var client = queue.Client();
            await Task.Delay(TimeSpan.FromSeconds(1.5)); // past the keeper's first look, at an empty table
            Assert.Equal(0L, await AnalyzedAsync(env));

            var enqueued = System.Diagnostics.Stopwatch.StartNew();
            await EnqueueAsync(client, 200);
            await WaitForAnalyzeAsync(env, after: 0);
            // A 5 s cadence would have looked next about 4.5 s after the insert; statistics reach pg_stat within a second.
            Assert.True(enqueued.Elapsed < TimeSpan.FromSeconds(3.5), $"first analyzed {enqueued.Elapsed.TotalSeconds:0.0} s after the first rows");
        }
        finally
        {
            await env.DisposeAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Leases_dead_entries_are_vacuumed_away_within_seconds_and_the_next_lease_reads_a_handful_of_pages()
    {
        var env = new QueueEnvironment();
        await env.InitializeAsync();
        try
        {
            var queue = await env.StartInstanceAsync(new Dictionary<string, string?> { ["Queue:StatisticsInterval"] = "00:00:00.200" });
            var client = queue.Client();
            var type = await EnqueueAsync(client, 8000);
            Assert.Equal(0L, await VacuumedAsync(env));

            // 6,000 leases from the head of the ready index: 6,000 dead entries in front of the next ready task.
            for (var leased = 0; leased < 6000; leased += 500)
            {
                var request = new LeaseTasksRequest { WorkerId = "w", MaxTasks = 500 };
                request.TaskTypes.Add(type);
                Assert.Equal(500, (await client.LeaseTasksAsync(request)).Tasks.Count);
            }

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
            while (await VacuumedAsync(env) == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the tasks table was not vacuumed within 20 s of 6,000 leases");
                await Task.Delay(100);
            }
            // The ready index holds the 2,000 pending tasks, not 8,000 entries of which 6,000 are dead. A vacuum can come
            // while the last leases still run, or find the dead rows still visible to a snapshot (an ANALYZE the keeper
            // runs at the same time): the keeper vacuums again while ≥ 5,000 are dead, so look until the next lease reads a
            // handful of pages, within seconds.
            await using var connection = new Npgsql.NpgsqlConnection(env.DatabaseConnectionString);
            await connection.OpenAsync();
            var looks = new List<string>();
            while (true)
            {
                await using var explain = new Npgsql.NpgsqlCommand($"""
                    EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM tasks WHERE tenant_id = 'default' AND type = '{type}'
                      AND status = 'pending' AND unmet_dependencies = 0 ORDER BY priority DESC, created_at, id LIMIT 1
                    """, connection);
                var plan = (string)(await explain.ExecuteScalarAsync())!;
                var buffers = System.Text.Json.JsonDocument.Parse(plan).RootElement[0].GetProperty("Plan").GetProperty("Shared Hit Blocks").GetInt64();
                if (buffers < 20)
                {
                    break;
                }
                looks.Add($"{buffers} pages (vacuums {await VacuumedAsync(env)}, dead {await env.ScalarAsync<long>("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'tasks'")})");
                Assert.True(DateTime.UtcNow < deadline, $"the next lease still reads many pages 20 s after the leases: {string.Join("; ", looks)}");
                await Task.Delay(200);
            }
        }
        finally
        {
            await env.DisposeAsync();
        }
    }

    private static Task<long> VacuumedAsync(QueueEnvironment env) =>
        env.ScalarAsync<long>("SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'tasks'");

    private static async Task<string> EnqueueAsync(QueueService.QueueServiceClient client, int count)
    {
        var type = NewType("stats");
        for (var done = 0; done < count; done += 100)
        {
            var request = new EnqueueTasksRequest();
            for (var i = 0; i < 100; i++)
            {
                request.Tasks.Add(new BatchTask { Key = i.ToString(System.Globalization.CultureInfo.InvariantCulture), Task = Spec(type) });
            }

            await client.EnqueueTasksAsync(request);
        }
        return type;
    }

    /// <summary>How many times the tasks table was analyzed (by hand — the keeper — not by autovacuum).</summary>
    private static Task<long> AnalyzedAsync(QueueEnvironment env) =>
        env.ScalarAsync<long>("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'tasks'");

    private static async Task<long> WaitForAnalyzeAsync(QueueEnvironment env, long after)
    {
        // Statistics counters reach pg_stat_user_tables within a second or so; the keeper looks every 200 ms.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while (DateTime.UtcNow < deadline)
        {
            if (await AnalyzedAsync(env) is var count && count > after)
            {
                return count;
            }

            await Task.Delay(100);
        }

        Assert.Fail($"the tasks table was not analyzed again within 15 s (analyze_count {await AnalyzedAsync(env)})");
        return 0;
    }
}
