using Lifeline.Registry.V1;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The liveness monitor does not count an outage — its own, or Redis's — against the workers: whoever beats again
/// within a heartbeat TTL of the registry seeing its stores again is not announced lost; a silent worker still is.
/// Its own class: it stops every registry instance of its environment and freezes its Redis.
/// </summary>
public sealed class LivenessOutageTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private static readonly TimeSpan LongerThanTtl = TimeSpan.FromSeconds(4.5); // the TTL is 3 s

    [Fact(Timeout = 120_000)]
    public async Task After_every_registry_instance_was_down_for_longer_than_a_ttl_beating_workers_are_not_announced_lost()
    {
        var first = await env.StartRegistryAsync();
        var current = first;
        var (live, silent) = await RegisterAsync(first.Registry());
        var beaters = live.Select(w => KeepBeatingThroughOutages(() => current.Registry(), w)).ToList();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(1));

            // No registry to beat to for longer than the TTL: every heartbeat lapses in Redis meanwhile.
            await env.StopRegistriesAsync();
            await Task.Delay(LongerThanTtl);
            var restarted = await env.StartRegistryAsync();
            await Task.Delay(TimeSpan.FromSeconds(1.5)); // the workers find it a moment later (their next attempt, within a TTL)
            current = restarted;

            // The silent worker is announced lost (one TTL after the registry is back); the beating ones, heard again within it, never.
            Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(silent.Id), "lost") == 1, TimeSpan.FromSeconds(20)),
                "the silent worker was not announced lost");
            await Task.Delay(TimeSpan.FromSeconds(1));
            foreach (var worker in live)
            {
                Assert.Equal(0, await env.CountEventsAsync(Guid.Parse(worker.Id), "lost"));
            }
            var answered = await current.Registry().GetWorkerAsync(new GetWorkerRequest { WorkerId = live[0].Id }, deadline: Deadline());
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

    [Fact(Timeout = 120_000)]
    public async Task A_redis_outage_longer_than_a_ttl_is_not_counted_against_the_workers_that_beat_again_after_it()
    {
        var registry = await env.StartRegistryAsync();
        var client = registry.Registry();
        var (live, silent) = await RegisterAsync(client);
        var beaters = live.Select(w => KeepBeatingThroughOutages(() => client, w)).ToList();
        await Task.Delay(TimeSpan.FromSeconds(1));

        // Redis hangs for longer than the TTL (and than the client's 5 s command timeout): no beat gets through, the
        // monitor's passes fail. The workers beat again a moment after it answers (their next beat, within a TTL).
        foreach (var beater in beaters)
        {
            await beater.DisposeAsync();
        }
        await env.Redis.PauseAsync();
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(6.5));
        }
        finally
        {
            await env.Redis.ResumeAsync();
        }
        // Their next beat (every 300 ms): the grace of one TTL (3 s) leaves room for a loaded machine's reconnect.
        await Task.Delay(TimeSpan.FromSeconds(0.3));
        beaters = live.Select(w => KeepBeatingThroughOutages(() => client, w)).ToList();
        try
        {
            Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(silent.Id), "lost") == 1, TimeSpan.FromSeconds(30)),
                "the silent worker was not announced lost");
            await Task.Delay(TimeSpan.FromSeconds(1));
            foreach (var worker in live)
            {
                Assert.Equal(0, await env.CountEventsAsync(Guid.Parse(worker.Id), "lost"));
            }
        }
        finally
        {
            foreach (var beater in beaters)
            {
                await beater.DisposeAsync();
            }
            await registry.StopAsync(); // the other test needs every registry instance down at once
        }
    }

    private static async Task<(Worker[] Live, Worker Silent)> RegisterAsync(RegistryService.RegistryServiceClient client)
    {
        var live = new Worker[3];
        for (var i = 0; i < live.Length; i++)
        {
            live[i] = (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker;
        }
        return (live, (await client.RegisterWorkerAsync(Registration(), deadline: Deadline())).Worker);
    }
}
