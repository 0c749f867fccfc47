using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.V1;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The registry's PostgreSQL crashes (SIGKILL of every server process, on a cluster of its own) and stays down for
/// longer than a heartbeat TTL while workers beat through the registry.
/// </summary>
public sealed class PostgresCrashTests
{
    [Fact(Timeout = 180_000)]
    public async Task The_registry_outlives_a_postgres_crash_longer_than_a_ttl_and_announces_only_the_silent_worker_lost()
    {
        await using var postgres = await PostgresServer.StartDedicatedAsync(PostgresSettings.Durable);
        await using var redis = await RedisServer.StartAsync();
        var database = await postgres.CreateDatabaseAsync("registry_crash");
        var settings = new Dictionary<string, string?>(RegistryEnvironment.FastSettings)
        {
            ["ConnectionStrings:registrydb"] = database,
            ["ConnectionStrings:redis"] = redis.ConnectionString,
        };
        await using var registry = await ServiceHost.StartAsync(RegistryApplication.Build, settings);
        var lifetime = registry.App.Services.GetRequiredService<IHostApplicationLifetime>();
        var client = registry.Registry();
        var live = new List<Worker>();
        for (var i = 0; i < 4; i++)
        {
            live.Add((await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker);
        }
        var silent = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
        var beaters = live.Select(w => KeepBeatingThroughOutages(() => client, w)).ToList();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(1));

            await postgres.CrashAsync();
            await Task.Delay(TimeSpan.FromSeconds(5)); // the TTL is 3 s: the silent worker's heartbeat lapses meanwhile
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the registry stopped while PostgreSQL was down");
            await postgres.RestartAsync();

            Assert.True(await EventuallyAsync(async () => await LostEventsAsync(database, [silent]) == 1, TimeSpan.FromSeconds(60)),
                "the silent worker was not announced lost after PostgreSQL came back");
            await Task.Delay(TimeSpan.FromSeconds(1));
            Assert.Equal(0, await LostEventsAsync(database, live));

            // It never stopped, its loops still run, and it answers from the restarted database.
            Assert.False(lifetime.ApplicationStopping.IsCancellationRequested, "the registry stopped");
            foreach (var loop in new BackgroundService[]
                     { registry.App.Services.GetRequiredService<LivenessMonitor>(), registry.App.Services.GetRequiredService<HeartbeatRecorder>() })
            {
                Assert.False(loop.ExecuteTask!.IsCompleted, $"{loop.GetType().Name} ended");
            }
            var answered = await client.GetWorkerAsync(new GetWorkerRequest { WorkerId = live[0].Id }, deadline: Deadline());
            Assert.Equal(WorkerStatus.Online, answered.Worker.Status);
        }
        finally
        {
            foreach (var beater in beaters)
            {
                await beater.DisposeAsync();
            }
        }
    }

    private static async Task<long> LostEventsAsync(string database, IEnumerable<Worker> workers)
    {
        try
        {
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(database) { Pooling = false, Timeout = 5 }.ConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT count(*) FROM worker_events WHERE event_type = 'lost' AND worker_id = ANY(@ids)", connection);
            command.Parameters.AddWithValue("ids", workers.Select(w => Guid.Parse(w.Id)).ToArray());
            return (long)(await command.ExecuteScalarAsync())!;
        }
        catch (NpgsqlException)
        {
            return -1; // still recovering from the crash
        }
    }
}
