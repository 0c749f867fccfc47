using System.Diagnostics;
using Lifeline.Common.V1;
using Lifeline.Queue.Reporting;
using Lifeline.Queue.V1;
using Lifeline.Registry.V1;
using Lifeline.ServiceDefaults.Leadership;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using static Lifeline.Registry.Tests.TestData;

namespace Lifeline.Registry.Tests;

/// <summary>
/// Two queue instances on one queue database: exactly one reports outcomes to the registry (the holder of the
/// <c>outcome-reporter</c> role), and when it stops the other takes over at once and goes on from the stored cursor.
/// Its own environment: it stops a queue instance.
/// </summary>
public sealed class OutcomeReporterHandoverTests(RegistryEnvironment env) : IClassFixture<RegistryEnvironment>
{
    private static LeaderElection Election(ServiceHost host) =>
        host.App.Services.GetRequiredKeyedService<LeaderElection>(OutcomeReporter.Role);

    private async Task<(string Holder, long Term)> LeaderInStoreAsync()
    {
        await using var connection = new NpgsqlConnection(env.QueueDatabase);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT holder, term FROM lifeline_leaders WHERE name = @name AND expires_at > now()", connection);
        command.Parameters.AddWithValue("name", OutcomeReporter.Role);
        await using var reader = await command.ExecuteReaderAsync();
        return await reader.ReadAsync() ? (reader.GetString(0), reader.GetInt64(1)) : ("", 0);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task One_queue_instance_reports_and_when_it_stops_the_other_takes_over_at_once_and_reports_on()
    {
        var second = await env.StartQueueAsync();
        ServiceHost[] queues = [env.Queue, second];
        ServiceHost? reporter = null;
        Assert.True(await EventuallyAsync(() =>
        {
            var leading = queues.Where(q => Election(q).Term is not null).ToList();
            Assert.True(leading.Count <= 1, "both queue instances report");
            reporter = leading.SingleOrDefault();
            return Task.FromResult(reporter is not null);
        }, TimeSpan.FromSeconds(20)));
        var before = Election(reporter!).Term!;
        Assert.Equal((before.Holder, before.Term), await LeaderInStoreAsync());
        var standby = queues.Single(q => q != reporter);

        // The reporter stops (and resigns): the standby takes over at its next attempt, well within the term's TTL.
        var stopped = Stopwatch.StartNew();
        await reporter!.StopAsync();
        using var wait = new CancellationTokenSource(OutcomeReporter.TermTtl);
        var after = await Election(standby).WaitForTermAsync(wait.Token);
        Assert.True(stopped.Elapsed < OutcomeReporter.TermTtl / 3 + TimeSpan.FromSeconds(2), $"took over after {stopped.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(before.Term + 1, after.Term);
        Assert.Equal((Election(standby).Holder, after.Term), await LeaderInStoreAsync());

        // Outcomes of work done after the handover still reach the registry, from the new reporter.
        var type = $"handover.{Guid.NewGuid():N}"[..21];
        var registry = env.Registry.Registry();
        var queue = standby.Queue();
        var worker = await registry.RegisterAsync(Registration(capabilities: type));
        await using var alive = registry.KeepBeating(worker);
        await queue.EnqueueTaskAsync(new EnqueueTaskRequest { Task = new TaskSpec { Type = type, MaxRetries = 0 } });
        var task = Assert.Single((await queue.LeaseTasksAsync(new LeaseTasksRequest { WorkerId = worker.Id, TaskTypes = { type } })).Tasks);
        await queue.FailTaskAsync(new FailTaskRequest
        {
            TaskId = task.Id, FencingToken = task.FencingToken, Error = new ErrorDetail { Code = "BOOM", Retryable = false },
        });
        Assert.True(await EventuallyAsync(async () =>
            (await registry.GetWorkerStatsAsync(new GetWorkerStatsRequest { WorkerId = worker.Id })).Stats.Failed == 1, TimeSpan.FromSeconds(10)));
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM task_outcomes WHERE worker_id = @id", ("id", Guid.Parse(worker.Id))));
    }
}
