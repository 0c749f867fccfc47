using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Workers;
using StackExchange.Redis;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>Task outcomes, the statistics built from them and the circuit breakers they drive.</summary>
public sealed class StatsAndBreakerTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private static string NewTenant() => $"stats-{Guid.NewGuid():N}"[..22];

    private static readonly DateTime Base = new(2026, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    private static TaskOutcome Outcome(string workerId, bool success, int durationMs, DateTime? at = null, string? id = null) => new()
    {
        OutcomeId = id ?? Guid.NewGuid().ToString(),
        WorkerId = workerId,
        TaskId = Guid.NewGuid().ToString(),
        TaskType = "email.send",
        Success = success,
        ErrorCode = success ? "" : "BOOM",
        Duration = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(durationMs)),
        OccurredAt = at is { } t ? Timestamp.FromDateTime(t) : null,
    };

    private static async Task RecordAsync(RegistryService.RegistryServiceClient client, params TaskOutcome[] outcomes)
    {
        var request = new RecordTaskOutcomesRequest();
        request.Outcomes.AddRange(outcomes);
        var response = await client.RecordTaskOutcomesAsync(request);
        Assert.Equal(outcomes.Length, response.RecordedCount);
    }

    /// <summary>A registry instance whose breakers stay open for 10 minutes, so "open" cannot expire mid-test.</summary>
    private Task<ServiceHost> LongOpenRegistryAsync() =>
        env.StartRegistryAsync(new Dictionary<string, string?> { ["Registry:BreakerOpenDuration"] = "00:10:00" });

    private async Task<Worker> OpenBreakerAsync(RegistryService.RegistryServiceClient client)
    {
        var worker = await client.RegisterAsync(Registration());
        await RecordAsync(client, Outcome(worker.Id, false, 10), Outcome(worker.Id, false, 10), Outcome(worker.Id, false, 10));
        return worker;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recording_the_same_outcome_twice_counts_it_once()
    {
        var client = env.Registry.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());
        var request = new RecordTaskOutcomeRequest { WorkerId = worker.Id, Outcome = Outcome("", false, 40) };

        var first = await client.RecordTaskOutcomeAsync(request);
        var second = await client.RecordTaskOutcomeAsync(request);

        Assert.True(first.Recorded);
        Assert.False(second.Recorded);
        Assert.Equal(1, second.Stats.Total);
        Assert.Equal(1, second.Stats.Failed);
        Assert.Equal(1, second.CircuitBreaker.ConsecutiveFailures); // the breaker saw it once too
        Assert.Equal(CircuitState.Closed, second.CircuitBreaker.State);

        // Also idempotent through the batch call, and the store holds one row.
        var again = request.Outcome.Clone();
        again.WorkerId = worker.Id; // (the single call took it from the request)
        var batch = new RecordTaskOutcomesRequest { Outcomes = { again } };
        Assert.Equal(0, (await client.RecordTaskOutcomesAsync(batch)).RecordedCount);
        var id = Guid.Parse(worker.Id);
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", id)));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT total FROM worker_stats WHERE worker_id = @id", ("id", id)));
        Assert.Equal(1, await env.ScalarAsync<int>("SELECT consecutive_failures FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_outcome_batches_for_one_worker_lose_no_update_and_count_shared_ids_once()
    {
        var host = await LongOpenRegistryAsync();
        var client = host.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());
        const int calls = 8, perCall = 50, shared = 10;

        // Each call: 10 outcomes every call shares (same id, same content), then 40 of its own; in time order,
        // successes and failures alternate, and every call ends with 5 failures in a row.
        var batches = Enumerable.Range(0, calls).Select(c =>
        {
            var request = new RecordTaskOutcomesRequest();
            for (var i = 0; i < perCall; i++)
            {
                var isShared = i < shared;
                var at = Base.AddMilliseconds(isShared ? i : 1000 + c * 100 + i);
                request.Outcomes.Add(Outcome(worker.Id, success: i < perCall - 5 && i % 2 == 0, durationMs: i, at: at,
                    id: isShared ? $"shared-{i}" : $"call-{c}-{i}"));
            }
            return request;
        }).ToList();

        var responses = await Task.WhenAll(batches.Select(b => client.RecordTaskOutcomesAsync(b).ResponseAsync));

        const long unique = shared + calls * (perCall - shared);
        const long succeeded = 5 + calls * 18; // shared: 0,2,4,6,8; own: 10,12,...,44
        const long durationMs = 45 + calls * 1180; // shared: 0..9; own: 10..49
        Assert.Equal(unique, responses.Sum(r => r.RecordedCount));
        Assert.All(responses, r => Assert.Equal(0, r.UnknownWorkerCount));

        var id = Guid.Parse(worker.Id);
        Assert.Equal(unique, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", id)));
        Assert.Equal($"{unique}|{succeeded}|{unique - succeeded}|{durationMs}", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', total, succeeded, failed, total_duration_ms) FROM worker_stats WHERE worker_id = @id", ("id", id)));

        var stats = (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats;
        Assert.Equal(unique, stats.Total);
        Assert.Equal(succeeded, stats.Succeeded);
        Assert.Equal((double)succeeded / unique, stats.SuccessRate, 12);
        Assert.Equal((double)durationMs / unique, stats.MeanDuration.ToTimeSpan().TotalMilliseconds, 3);
        Assert.Equal(5, stats.ConsecutiveFailures); // whichever call committed last ends with 5 failures after a success

        // Each call applies its outcomes to the breaker in time order: successes, then 5 failures. Whatever
        // order the calls win their optimistic updates in, the breaker ends open with 5 failures.
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
        var breaker = (await client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker;
        Assert.Equal(5, breaker.ConsecutiveFailures);
        Assert.Equal("open", await env.ScalarAsync<string>("SELECT state FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
        await host.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_single_failures_from_many_tasks_all_reach_the_breaker()
    {
        var host = await LongOpenRegistryAsync();
        var client = host.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());

        var responses = await Task.WhenAll(Enumerable.Range(0, 16).Select(_ =>
            client.RecordTaskOutcomeAsync(new RecordTaskOutcomeRequest { WorkerId = worker.Id, Outcome = Outcome(worker.Id, false, 5) }).ResponseAsync));

        Assert.All(responses, r => Assert.True(r.Recorded));
        var id = Guid.Parse(worker.Id);
        Assert.Equal(16L, await env.ScalarAsync<long>("SELECT total FROM worker_stats WHERE worker_id = @id", ("id", id)));
        Assert.Equal(16, await env.ScalarAsync<int>("SELECT consecutive_failures FROM worker_stats WHERE worker_id = @id", ("id", id)));
        Assert.Equal(16, await env.ScalarAsync<int>("SELECT consecutive_failures FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
        Assert.Equal("open", await env.ScalarAsync<string>("SELECT state FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
        await host.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Success_rate_and_mean_duration_are_computed_from_the_recorded_outcomes()
    {
        var client = env.Registry.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());
        await RecordAsync(client,
            Outcome(worker.Id, true, 100, Base), Outcome(worker.Id, true, 200, Base.AddSeconds(1)),
            Outcome(worker.Id, false, 400, Base.AddSeconds(2)), Outcome(worker.Id, true, 300, Base.AddSeconds(3)));

        var stats = (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats;

        Assert.Equal(worker.Id, stats.WorkerId);
        Assert.Equal(worker.Name, stats.WorkerName);
        Assert.Equal(4, stats.Total);
        Assert.Equal(3, stats.Succeeded);
        Assert.Equal(1, stats.Failed);
        Assert.Equal(0.75, stats.SuccessRate);
        Assert.Equal(TimeSpan.FromMilliseconds(250), stats.MeanDuration.ToTimeSpan());
        Assert.Equal(0, stats.ConsecutiveFailures);
        Assert.Equal(Base.AddSeconds(3), stats.LastOutcomeAt.ToDateTime());

        var fresh = await client.RegisterAsync(Registration());
        var none = (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = fresh.Id })).Stats;
        Assert.Equal(0, none.Total);
        Assert.Equal(0, none.SuccessRate);
        Assert.Equal(TimeSpan.Zero, none.MeanDuration.ToTimeSpan());
        Assert.Null(none.LastOutcomeAt);
    }

    private async Task<Worker> WorkerWithAsync(RegistryService.RegistryServiceClient client, string name, int succeeded, int failed)
    {
        var worker = await client.RegisterAsync(Registration(name));
        var outcomes = Enumerable.Range(0, succeeded + failed).Select(i => Outcome(worker.Id, i < succeeded, 10, Base.AddSeconds(i))).ToArray();
        if (outcomes.Length > 0)
        {
            await RecordAsync(client, outcomes);
        }
        return worker;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Listing_stats_orders_top_performers_by_success_rate_then_total_and_filters_underperformers()
    {
        var client = env.Registry.Registry(NewTenant());
        await WorkerWithAsync(client, "d-quarter", 1, 3);     // 0.25 of 4
        await WorkerWithAsync(client, "a-perfect-5", 5, 0);   // 1.0 of 5
        await WorkerWithAsync(client, "c-eighty", 8, 2);      // 0.8 of 10
        await WorkerWithAsync(client, "b-perfect-10", 10, 0); // 1.0 of 10
        await WorkerWithAsync(client, "f-twenty", 2, 8);      // 0.2 of 10
        await WorkerWithAsync(client, "e-idle", 0, 0);        // no outcomes: not listed

        async Task<string[]> List(StatsOrder order, int minOutcomes = 0, double maxRate = 0, int pageSize = 0) =>
            (await client.ListWorkerStatsAsync(new ListWorkerStatsRequest { Order = order, MinOutcomes = minOutcomes, MaxSuccessRate = maxRate, PageSize = pageSize }))
            .Stats.Select(s => s.WorkerName).ToArray();

        Assert.Equal(["b-perfect-10", "a-perfect-5", "c-eighty", "d-quarter", "f-twenty"], await List(StatsOrder.Top));
        Assert.Equal(["b-perfect-10", "a-perfect-5", "c-eighty", "d-quarter", "f-twenty"], await List(StatsOrder.Unspecified));
        Assert.Equal(["b-perfect-10", "a-perfect-5"], await List(StatsOrder.Top, pageSize: 2));

        // Defaults: at least 10 outcomes, below 0.8 (0.8 itself is not below).
        Assert.Equal(["f-twenty"], await List(StatsOrder.Underperforming));
        Assert.Equal(["f-twenty", "c-eighty"], await List(StatsOrder.Underperforming, minOutcomes: 5, maxRate: 0.9));
        Assert.Equal(["f-twenty", "d-quarter", "c-eighty"], await List(StatsOrder.Underperforming, minOutcomes: 4, maxRate: 0.81));
        Assert.Equal(["f-twenty", "d-quarter"], await List(StatsOrder.Underperforming, minOutcomes: 1, maxRate: 0.5));
        Assert.Equal(["f-twenty", "d-quarter", "c-eighty"], await List(StatsOrder.Underperforming, minOutcomes: 1, maxRate: 1.0)); // perfect ones are not below 1

        // Another tenant's statistics are not listed.
        Assert.Empty((await env.Registry.Registry(NewTenant()).ListWorkerStatsAsync(new ListWorkerStatsRequest { Order = StatsOrder.Top })).Stats);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Recalculating_rebuilds_corrupted_statistics_equal_to_the_incremental_ones()
    {
        var tenant = NewTenant();
        var client = env.Registry.Registry(tenant);
        var worker = await client.RegisterAsync(Registration());
        var other = await client.RegisterAsync(Registration());
        await RecordAsync(client, Outcome(worker.Id, true, 120, Base), Outcome(worker.Id, false, 80, Base.AddSeconds(1)));
        await RecordAsync(client, Outcome(worker.Id, true, 30, Base.AddSeconds(2)), Outcome(worker.Id, false, 70, Base.AddSeconds(3)),
            Outcome(worker.Id, false, 10, Base.AddSeconds(4)));
        await RecordAsync(client, Outcome(other.Id, true, 5, Base));
        var incremental = (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats;
        var otherIncremental = (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = other.Id })).Stats;
        Assert.Equal(5, incremental.Total);
        Assert.Equal(2, incremental.ConsecutiveFailures);

        const string corrupt = """
            UPDATE worker_stats SET total = 0, succeeded = 0, failed = 0, total_duration_ms = 0, consecutive_failures = 0, last_outcome_at = NULL
            WHERE tenant_id = @t RETURNING 1
            """;
        await env.ScalarAsync<int>(corrupt, ("t", tenant));
        Assert.Equal(0, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats.Total);

        var one = await client.RecalculateWorkerStatsAsync(new RecalculateWorkerStatsRequest { WorkerId = worker.Id });
        Assert.Equal(1, one.WorkersRecalculated);
        Assert.Equal(incremental, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats);
        Assert.Equal(0, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = other.Id })).Stats.Total); // only the one asked for

        await env.ScalarAsync<int>(corrupt, ("t", tenant));
        var all = await client.RecalculateWorkerStatsAsync(new RecalculateWorkerStatsRequest());
        Assert.Equal(2, all.WorkersRecalculated); // every worker of this tenant, no other tenant's
        Assert.Equal(incremental, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats);
        Assert.Equal(otherIncremental, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = other.Id })).Stats);

        var unknown = await RefusedAsync(() => client.RecalculateWorkerStatsAsync(
            new RecalculateWorkerStatsRequest { WorkerId = Guid.NewGuid().ToString() }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("WORKER_NOT_FOUND", unknown.ErrorInfo().Reason);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Resetting_an_open_breaker_closes_it_and_the_redis_mirror_follows()
    {
        var host = await LongOpenRegistryAsync();
        var tenant = NewTenant();
        var client = host.Registry(tenant);
        var worker = await OpenBreakerAsync(client);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(env.RedisConnectionString);
        var key = WorkerMirror.WorkerKey(tenant, worker.Id);

        var open = (await client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker;
        Assert.Equal(CircuitState.Open, open.State);
        Assert.Equal(3, open.ConsecutiveFailures);
        Assert.Equal(3, open.FailureThreshold);
        Assert.NotNull(open.ResetAt);
        Assert.Equal("open", (string?)await redis.GetDatabase().HashGetAsync(key, "breaker"));
        Assert.False((await redis.GetDatabase().HashGetAsync(key, "breaker_reset_at")).IsNullOrEmpty);

        var reset = (await client.ResetCircuitBreakerAsync(new ResetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker;

        Assert.Equal(CircuitState.Closed, reset.State);
        Assert.Equal(0, reset.ConsecutiveFailures);
        Assert.Null(reset.ResetAt);
        var id = Guid.Parse(worker.Id);
        Assert.Equal("closed|0|t", await env.ScalarAsync<string>(
            "SELECT concat_ws('|', state, consecutive_failures, reset_at IS NULL) FROM circuit_breakers WHERE worker_id = @id", ("id", id)));
        Assert.Equal("closed", (string?)await redis.GetDatabase().HashGetAsync(key, "breaker"));
        Assert.True((await redis.GetDatabase().HashGetAsync(key, "breaker_reset_at")).IsNullOrEmpty);
        var eligibility = await WorkerMirror.ReadEligibilityAsync(redis.GetDatabase(), tenant, worker.Id);
        Assert.NotEqual("CIRCUIT_OPEN", eligibility!.Refusal(DateTimeOffset.UtcNow)?.Reason);

        // Resetting a closed breaker is harmless; statistics are not touched by a reset.
        Assert.Equal(CircuitState.Closed, (await client.ResetCircuitBreakerAsync(new ResetCircuitBreakerRequest { WorkerId = worker.Id })).CircuitBreaker.State);
        Assert.Equal(3, (await client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats.Failed);
        await host.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Listing_breakers_filters_by_state_and_pages_through_all_of_them()
    {
        var host = await LongOpenRegistryAsync();
        var client = host.Registry(NewTenant());
        var open = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            open.Add((await OpenBreakerAsync(client)).Id);
        }
        var closed = new List<string>();
        for (var i = 0; i < 2; i++)
        {
            closed.Add((await client.RegisterAsync(Registration())).Id);
        }

        async Task<List<CircuitBreaker>> ListAll(CircuitState state, int pageSize)
        {
            var all = new List<CircuitBreaker>();
            var token = "";
            var pages = 0;
            do
            {
                var page = await client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { State = state, PageSize = pageSize, PageToken = token });
                Assert.InRange(page.CircuitBreakers.Count, 1, pageSize);
                all.AddRange(page.CircuitBreakers);
                token = page.NextPageToken;
                Assert.True(++pages <= 10);
            }
            while (token.Length > 0);
            return all;
        }

        var openListed = await ListAll(CircuitState.Open, 2);
        Assert.Equal(open.Order(), openListed.Select(b => b.WorkerId).Order());
        Assert.All(openListed, b => Assert.Equal(CircuitState.Open, b.State));
        Assert.Equal(closed.Order(), (await ListAll(CircuitState.Closed, 1)).Select(b => b.WorkerId).Order());
        var everything = await ListAll(CircuitState.Unspecified, 2);
        Assert.Equal(open.Concat(closed).Order(), everything.Select(b => b.WorkerId).Order());
        Assert.Equal(5, everything.Select(b => b.WorkerId).Distinct().Count()); // no page repeats one
        Assert.Empty((await client.ListCircuitBreakersAsync(new ListCircuitBreakersRequest { State = CircuitState.HalfOpen })).CircuitBreakers);
        await host.StopAsync();
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_open_breaker_half_opens_after_its_open_duration_and_a_success_closes_it()
    {
        var client = env.Registry.Registry(NewTenant());
        var worker = await OpenBreakerAsync(client); // the environment's breakers open for 2 s
        var id = Guid.Parse(worker.Id);
        Assert.Equal("open", await env.ScalarAsync<string>("SELECT state FROM circuit_breakers WHERE worker_id = @id", ("id", id)));

        Assert.True(await EventuallyAsync(async () =>
            await env.ScalarAsync<string>("SELECT state FROM circuit_breakers WHERE worker_id = @id", ("id", id)) == "half_open", TimeSpan.FromSeconds(6)));
        var response = await client.RecordTaskOutcomeAsync(new RecordTaskOutcomeRequest { WorkerId = worker.Id, Outcome = Outcome(worker.Id, true, 10) });

        Assert.Equal(CircuitState.Closed, response.CircuitBreaker.State);
        Assert.Equal(0, response.CircuitBreaker.ConsecutiveFailures);
        Assert.Equal(0, response.Stats.ConsecutiveFailures);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Breaker_and_stats_of_an_unknown_worker_are_not_found()
    {
        var client = env.Registry.Registry(NewTenant());
        var unknown = Guid.NewGuid().ToString();

        var breaker = await RefusedAsync(() => client.GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = unknown }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("WORKER_NOT_FOUND", breaker.ErrorInfo().Reason);
        var reset = await RefusedAsync(() => client.ResetCircuitBreakerAsync(new ResetCircuitBreakerRequest { WorkerId = unknown }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("WORKER_NOT_FOUND", reset.ErrorInfo().Reason);
        var stats = await RefusedAsync(() => client.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = unknown }).ResponseAsync, StatusCode.NotFound);
        Assert.Equal("WORKER_NOT_FOUND", stats.ErrorInfo().Reason);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(unknown))));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_batch_counts_outcomes_of_unknown_workers_and_records_only_the_known_ones()
    {
        var client = env.Registry.Registry(NewTenant());
        var worker = await client.RegisterAsync(Registration());
        var stranger = await env.Registry.Registry(NewTenant()).RegisterAsync(Registration()); // another tenant's worker

        var response = await client.RecordTaskOutcomesAsync(new RecordTaskOutcomesRequest
        {
            Outcomes = { Outcome(worker.Id, true, 1), Outcome(Guid.NewGuid().ToString(), true, 1), Outcome(stranger.Id, false, 1) },
        });

        Assert.Equal(1, response.RecordedCount);
        Assert.Equal(2, response.UnknownWorkerCount);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", Guid.Parse(stranger.Id))));
        Assert.Equal(0, await env.ScalarAsync<int>("SELECT consecutive_failures FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(stranger.Id))));
    }
}
