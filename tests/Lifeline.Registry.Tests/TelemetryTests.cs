using Google.Protobuf.WellKnownTypes;
using Lifeline.Registry.Telemetry;
using Lifeline.Registry.V1;
using Microsoft.Extensions.DependencyInjection;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// The registry's metrics against real servers: the interval between heartbeats, the loss detection time of a worker that
/// went silent (TTL 3 s here), the sampled gauges of workers by status and open breakers, and a /metrics scrape that
/// has every registry metric the alerting rules use.
/// </summary>
public sealed class TelemetryTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Heartbeats_loss_detection_breakers_and_workers_are_measured_and_scraped()
    {
        using var recorded = new HostMeasurements(env.Registry, RegistryTelemetry.Name);
        var tenant = $"tel-{Guid.NewGuid():N}"[..16];
        var client = env.Registry.Registry(tenant);

        // Two beats 400 ms apart: one interval of about 400 ms.
        var silent = await client.RegisterAsync(Registration());
        await client.BeatAsync(silent);
        await Task.Delay(400);
        await client.BeatAsync(silent);
        var interval = Assert.Single(recorded.Values(RegistryTelemetry.HeartbeatIntervalName));
        Assert.InRange(interval, 0.35, 5);

        // Silent now: lost after the TTL (3 s) and one monitor pass; the detection time runs from its last recorded beat.
        var silentAt = DateTime.UtcNow;
        Assert.True(await EventuallyAsync(async () => await env.CountEventsAsync(Guid.Parse(silent.Id), "lost") > 0, TimeSpan.FromSeconds(15)));
        Assert.Equal(1, recorded.Sum(RegistryTelemetry.WorkersLostName));
        var detection = Assert.Single(recorded.Values(RegistryTelemetry.LossDetectionName));
        Assert.InRange(detection, 2.5, (DateTime.UtcNow - silentAt).TotalSeconds + 1.0);

        // A breaker opened by three failures in a row, and a live worker; the sample counts them.
        var failing = await client.RegisterAsync(Registration());
        var outcomes = new RecordTaskOutcomesRequest();
        for (var i = 0; i < 3; i++)
        {
            outcomes.Outcomes.Add(new TaskOutcome
            {
                OutcomeId = Guid.NewGuid().ToString(), WorkerId = failing.Id, TaskId = Guid.NewGuid().ToString(), TaskType = "email.send",
                Success = false, ErrorCode = "BOOM", Duration = Duration.FromTimeSpan(TimeSpan.FromMilliseconds(10)),
            });
        }
        Assert.Equal(3, (await client.RecordTaskOutcomesAsync(outcomes)).RecordedCount);
        await env.Registry.App.Services.GetRequiredService<RegistryMetricsSampler>().SampleAsync(CancellationToken.None);
        recorded.Observe();
        var openBreakers = await env.ScalarAsync<long>("SELECT count(*) FROM circuit_breakers WHERE state = 'open'");
        Assert.True(openBreakers >= 1);
        Assert.Equal(openBreakers, recorded.Last(RegistryTelemetry.BreakersOpenName));
        Assert.Equal(await env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE status = 'offline' AND deregistered_at IS NULL"),
            recorded.Last(RegistryTelemetry.WorkersName, (RegistryTelemetry.StatusTag, "offline")));
        Assert.Equal(await env.ScalarAsync<long>("SELECT count(*) FROM workers WHERE status = 'online' AND deregistered_at IS NULL"),
            recorded.Last(RegistryTelemetry.WorkersName, (RegistryTelemetry.StatusTag, "online")));

        var scrape = await RuleMetrics.ScrapeAsync(env.Registry);
        var expected = RuleMetrics.For("registry");
        Assert.Contains(expected, e => e.Metric == "lifeline_registry_breakers_open");
        Assert.Empty(RuleMetrics.Missing(scrape, expected));
        Assert.Contains("lifeline_registry_workers{", scrape);
        Assert.Contains("lifeline_registry_heartbeat_lag_seconds", scrape);
    }
}
