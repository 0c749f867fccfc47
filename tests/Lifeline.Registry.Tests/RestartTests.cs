using Lifeline.Registry.V1;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>Registry restarts (its own class: it stops every registry instance of its environment).</summary>
public sealed class RestartTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Breaker_state_survives_a_registry_restart_and_an_expired_open_breaker_is_restored_half_open()
    {
        var restartable = await env.StartRegistryAsync();
        var client = restartable.Registry();
        var open = await client.RegisterAsync(Registration());
        var stillOpen = await client.RegisterAsync(Registration());
        foreach (var worker in new[] { open, stillOpen })
        {
            var request = new RecordTaskOutcomesRequest();
            for (var i = 0; i < 3; i++)
            {
                request.Outcomes.Add(new TaskOutcome
                {
                    OutcomeId = Guid.NewGuid().ToString(), WorkerId = worker.Id, TaskId = Guid.NewGuid().ToString(), TaskType = "t", ErrorCode = "X",
                });
            }
            await client.RecordTaskOutcomesAsync(request);
        }
        await restartable.StopAsync();
        await env.Registry.StopAsync(); // every registry instance down

        // While no registry runs, the first breaker's open period ends; the second stays open for an hour.
        await env.ScalarAsync<int>("UPDATE circuit_breakers SET reset_at = now() - interval '1 second' WHERE worker_id = @id RETURNING 1", ("id", Guid.Parse(open.Id)));
        await env.ScalarAsync<int>("UPDATE circuit_breakers SET reset_at = now() + interval '1 hour' WHERE worker_id = @id RETURNING 1", ("id", Guid.Parse(stillOpen.Id)));

        var restarted = await env.StartRegistryAsync();
        Assert.Equal("half_open", await env.ScalarAsync<string>("SELECT state FROM circuit_breakers WHERE worker_id = @id", ("id", Guid.Parse(open.Id))));
        var kept = (await restarted.Registry().GetCircuitBreakerAsync(new GetCircuitBreakerRequest { WorkerId = stillOpen.Id })).CircuitBreaker;
        Assert.Equal(CircuitState.Open, kept.State);
        Assert.Equal(3, kept.ConsecutiveFailures);
        Assert.Equal(3, (await restarted.Registry().GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = stillOpen.Id })).Stats.Failed);
    }

}
