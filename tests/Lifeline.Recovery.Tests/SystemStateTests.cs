using Google.Rpc;
using Grpc.Core;
using Lifeline.Queue.V1;
using Lifeline.Recovery.Leadership;
using Lifeline.ServiceDefaults.Leadership;
using Lifeline.Recovery.SystemState;
using Lifeline.Recovery.V1;
using Lifeline.Registry.V1;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Recovery.Tests;

/// <summary>The leader snapshots the control plane at start, periodically and on change; any instance serves it.</summary>
public sealed class SystemStateTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private SystemStateService.SystemStateServiceClient Client => env.SystemStateClient();

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_snapshot_is_written_at_start_and_then_periodically_and_the_history_grows()
    {
        var first = await SystemStateSupport.EventuallyAsync(async () =>
        {
            try
            {
                return (await Client.GetSystemStateAsync(new GetSystemStateRequest())).State;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
            {
                return null;
            }
        });
        Assert.Equal(SystemStatus.Running, first.Status);
        Assert.Equal(SystemStateFormat.CurrentVersion, first.Version);
        Assert.Equal("00:00:01", first.Configuration["StateSnapshotInterval"]);
        Assert.Equal("default,acme", first.Configuration["Tenants"]);
        Assert.Equal(1.0, first.Metrics["success_rate"]);
        Assert.True(first.Metrics.ContainsKey("recovered_today"));

        var history = await SystemStateSupport.EventuallyAsync(async () =>
        {
            var page = await Client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1000 });
            return page.States.Count >= 3 && page.States.Any(s => s.Reason == "periodic") ? page : null;
        });
        Assert.Contains(history.States, s => s.Reason == "startup");
        var times = history.States.Select(s => s.CreatedAt.ToDateTime()).ToList();
        Assert.Equal(times.OrderByDescending(t => t), times); // newest first
        Assert.Equal((long)history.States.Count, await env.ScalarAsync<long>("SELECT count(*) FROM system_states WHERE created_at <= @t",
            ("t", times[0])));

        // Paging by (created_at, id): pages of one walk the same history without overlap.
        var firstPage = await Client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1 });
        var secondPage = await Client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 1, PageToken = firstPage.NextPageToken });
        Assert.NotEqual(firstPage.States[0].Id, secondPage.States[0].Id);
        Assert.True(secondPage.States[0].CreatedAt.ToDateTime() <= firstPage.States[0].CreatedAt.ToDateTime());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Enqueued_tasks_change_the_queue_counts_and_a_change_snapshot_is_written()
    {
        await env.QueueClient("acme").EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = $"state.{Guid.NewGuid():N}"[..20], Payload = "{}" } });
        var live = await SystemStateSupport.PendingAsync(env);

        var state = await SystemStateSupport.EventuallyAsync(async () =>
        {
            var page = await Client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 50 });
            return page.States.FirstOrDefault(s => s.Reason == "change" && s.QueueCounts.GetValueOrDefault("TASK_STATUS_PENDING") == live);
        });
        Assert.Contains("TASK_STATUS_PENDING", state.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task The_configuration_in_a_snapshot_never_holds_webhook_secrets()
    {
        var standby = await env.StartRecoveryAsync(new Dictionary<string, string?>
        {
            ["Recovery:Webhooks:0:Name"] = "ops",
            ["Recovery:Webhooks:0:Url"] = "http://127.0.0.1:9/hook",
            ["Recovery:Webhooks:0:Secret"] = "s3cret-value-never-shown",
        });
        var configuration = standby.App.Services.GetRequiredService<SystemStateCollector>().Configuration(["default"]);

        Assert.Equal("ops", configuration["Webhooks"]);
        Assert.DoesNotContain(configuration, kv => kv.Value.Contains("s3cret", StringComparison.Ordinal) || kv.Key.Contains("Secret", StringComparison.Ordinal));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM system_states WHERE configuration::text LIKE '%s3cret%'"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Without_any_snapshot_GetSystemState_is_not_found_and_bad_page_input_is_refused()
    {
        var empty = await env.Postgres.CreateDatabaseAsync("recovery_state_empty");
        try
        {
            // A standby on its own database: another instance holds the role there (and writes nothing), so nothing is there.
            await env.ScalarOnAsync<object>(empty, LeadershipTable.Schema);
            await env.ScalarOnAsync<object>(empty, "INSERT INTO lifeline_leaders VALUES ('recovery', 'elsewhere', 1, now(), now() + interval '1 hour') RETURNING NULL");
            var standby = await env.StartRecoveryAsync(new Dictionary<string, string?> { ["ConnectionStrings:recoverydb"] = empty });
            var client = env.SystemStateClient(standby);
            var missing = await ConsistencyScene.RefusedAsync(() => client.GetSystemStateAsync(new GetSystemStateRequest()).ResponseAsync, StatusCode.NotFound);
            Assert.Equal("SYSTEM_STATE_NOT_FOUND", missing.GetDetail<ErrorInfo>()!.Reason);
            Assert.Empty((await client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest())).States);
            await standby.StopAsync();
        }
        finally
        {
            await env.Postgres.DropDatabaseAsync(empty);
        }

        var bad = await ConsistencyScene.RefusedAsync(() => Client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest
        {
            PageSize = 1001, PageToken = "not-a-token",
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["page_size", "page_token"], bad.GetDetail<BadRequest>()!.FieldViolations.Select(f => f.Field));
    }
}

/// <summary>The recovery environment of the restore tests, with the recovery instances they start one after another.</summary>
public sealed class SystemStateRestoreFixture : IAsyncLifetime
{
    public RecoveryEnvironment Env { get; } = new();
    public List<ServiceHost> Instances { get; } = [];

    public Task InitializeAsync() => Env.InitializeAsync();

    public Task DisposeAsync() => Env.DisposeAsync();
}

/// <summary>
/// Restores at the start of a term: each test stops the leading instance, plants a snapshot as the newest row,
/// starts a new instance and waits for it to lead and restore.
/// </summary>
public sealed class SystemStateRestoreTests(SystemStateRestoreFixture fixture) : IClassFixture<SystemStateRestoreFixture>
{
    private RecoveryEnvironment Env => fixture.Env;

    private const string Counts = """{"TASK_STATUS_PENDING": 0}""";
    private const string Metrics = """{"recovered_today": 0, "failed_today": 0, "success_rate": 1}""";
    private const string Configuration = """{"Tenants": "default,acme"}""";

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_snapshot_of_another_major_version_is_refused_with_a_clear_message_and_status_error()
    {
        var restored = await RestartAfterPlantingAsync("2.1.0", """{"total":0,"online":0,"busy":0,"draining":0,"offline":0}""", Counts);

        Assert.Equal(SystemStatus.Error, restored.Status);
        Assert.Equal(SystemStateFormat.CurrentVersion, restored.Version);
        Assert.Contains("persisted state has format version 2.1.0; this service reads major version 1 — refusing to restore", restored.Message, StringComparison.Ordinal);
        Assert.Contains("continuing from the live queue and registry", restored.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_snapshot_missing_a_field_is_refused()
    {
        var restored = await RestartAfterPlantingAsync("1.0.0", """{"total":1,"online":1,"busy":0,"draining":0}""", Counts);

        Assert.Equal(SystemStatus.Error, restored.Status);
        Assert.Contains("is missing worker_pool.offline — refusing to restore", restored.Message, StringComparison.Ordinal);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_restore_cleans_out_workers_the_registry_no_longer_knows_and_reconciles_counts_with_the_live_queue()
    {
        var registry = Env.RegistryClient();
        var kept = (await registry.RegisterWorkerAsync(new RegisterWorkerRequest { Name = $"kept-{Guid.NewGuid():N}"[..16], Type = WorkerType.Standalone, Capabilities = { "x" } })).Worker;
        var left = (await registry.RegisterWorkerAsync(new RegisterWorkerRequest { Name = $"left-{Guid.NewGuid():N}"[..16], Type = WorkerType.Standalone, Capabilities = { "x" } })).Worker;
        await registry.DeregisterWorkerAsync(new DeregisterWorkerRequest { WorkerId = left.Id });
        var ghost = Guid.NewGuid().ToString();
        for (var i = 0; i < 3; i++)
        {
            await Env.QueueClient().EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = "restore.work", Payload = "{}" } });
        }
        var pool = $$"""
            {"total":3,"online":3,"busy":0,"draining":0,"offline":0,"workers":[
              {"tenant":"default","id":"{{kept.Id}}","name":"{{kept.Name}}","status":"online"},
              {"tenant":"default","id":"{{left.Id}}","name":"{{left.Name}}","status":"online"},
              {"tenant":"default","id":"{{ghost}}","name":"ghost-1","status":"online"}]}
            """;

        var restored = await RestartAfterPlantingAsync("1.0.0", pool, Counts);

        Assert.Equal("restored", restored.Reason);
        Assert.Equal(SystemStatus.Running, restored.Status);
        Assert.Contains("cleaned out 2 stale worker(s)", restored.Message, StringComparison.Ordinal);
        Assert.Contains($"default/{ghost} (ghost-1, unknown to the registry)", restored.Message, StringComparison.Ordinal);
        Assert.Contains($"default/{left.Id} ({left.Name}, deregistered)", restored.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(kept.Id, restored.Message, StringComparison.Ordinal);
        var stored = await Env.ScalarAsync<string>("SELECT worker_pool::text FROM system_states WHERE id = @id", ("id", Guid.Parse(restored.Id)));
        Assert.Contains(kept.Id, stored, StringComparison.Ordinal);
        Assert.DoesNotContain(ghost, stored, StringComparison.Ordinal);
        Assert.DoesNotContain(left.Id, stored, StringComparison.Ordinal);

        var live = await SystemStateSupport.PendingAsync(Env);
        Assert.True(live >= 3);
        Assert.Equal(live, restored.QueueCounts["TASK_STATUS_PENDING"]);
        Assert.Contains($"TASK_STATUS_PENDING 0 → {live}", restored.Message, StringComparison.Ordinal);

        // The disaster-recovery step calls the same restore on the leader: the newest snapshot is now valid and current.
        var keeper = fixture.Instances[^1].App.Services.GetRequiredService<SystemStateKeeper>();
        var again = await keeper.RestoreAndReconcileAsync(CancellationToken.None);
        Assert.Equal("restored", again.Reason);
        Assert.Contains("no stale workers", again.Message, StringComparison.Ordinal);
        Assert.Equal(again.Id, (await Env.SystemStateClient(fixture.Instances[^1]).GetSystemStateAsync(new GetSystemStateRequest())).State.Id);
    }

    /// <summary>Stops the leader, plants the newest snapshot, starts an instance, waits for it to lead, and returns what its restore wrote.</summary>
    private async Task<V1.SystemState> RestartAfterPlantingAsync(string version, string pool, string counts)
    {
        await Env.Recovery.StopAsync();
        foreach (var instance in fixture.Instances)
        {
            await instance.StopAsync();
        }
        var plantedAt = await Env.ScalarAsync<DateTime>("""
            INSERT INTO system_states (id, status, version, worker_pool, queue_counts, metrics, configuration, reason, message, created_at)
            VALUES (@id, 2, @version, @pool::jsonb, @counts::jsonb, @metrics::jsonb, @configuration::jsonb, 'periodic', 'planted', clock_timestamp())
            RETURNING created_at
            """, ("id", Guid.NewGuid()), ("version", version), ("pool", pool), ("counts", counts), ("metrics", Metrics), ("configuration", Configuration));
        var host = await Env.StartRecoveryAsync();
        fixture.Instances.Add(host);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await host.App.Services.GetRequiredKeyedService<LeaderElection>(RecoveryLeadership.Role).WaitForTermAsync(timeout.Token);
        var client = Env.SystemStateClient(host);
        return await SystemStateSupport.EventuallyAsync(async () =>
        {
            var page = await client.ListSystemStateHistoryAsync(new ListSystemStateHistoryRequest { PageSize = 20 });
            return page.States.LastOrDefault(s => s.CreatedAt.ToDateTime() > plantedAt && s.Reason is "startup" or "restored");
        });
    }
}

internal static class SystemStateSupport
{
    public static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe, double seconds = 20) where T : class
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(seconds);
        while (true)
        {
            if (await probe() is { } found)
            {
                return found;
            }
            Assert.True(DateTime.UtcNow < deadline, "the expected system state did not appear in time");
            await Task.Delay(200);
        }
    }

    /// <summary>Pending tasks over the covered tenants, from the live queue.</summary>
    public static async Task<long> PendingAsync(RecoveryEnvironment env)
    {
        long total = 0;
        foreach (var tenant in new[] { "default", "acme" })
        {
            total += (await env.QueueClient(tenant).GetQueueStatsAsync(new GetQueueStatsRequest())).Totals.GetValueOrDefault("TASK_STATUS_PENDING");
        }
        return total;
    }
}
