using Lifeline.Backup.Scheduling;
using Lifeline.Backup.V1;
using Lifeline.ServiceDefaults.Leadership;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Backup.Tests;

/// <summary>Due schedules run once, on exactly one of several instances.</summary>
public sealed class SchedulerTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_due_schedule_runs_exactly_once_across_two_instances_and_moves_to_its_next_time()
    {
        var target = await env.CreateTargetAsync(rows: 20);
        await using var a = await env.StartAsync([target]);
        await using var b = await env.StartAsync([target]);
        var client = a.Backups();
        await client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = "0 0 1 1 *" });
        await env.ScalarAsync<int>("UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE target = @t RETURNING 1", ("t", target.Name));

        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            (await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name })).Schedules.Single().LastBackupId.Length > 0,
            TimeSpan.FromSeconds(30)));
        await Task.Delay(1000); // several more scheduler ticks on both instances

        var schedule = (await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name })).Schedules.Single();
        Assert.Equal("", schedule.LastError);
        Assert.True(schedule.NextRunAt.ToDateTime() > DateTime.UtcNow.AddDays(1));
        var backups = await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name });
        var only = Assert.Single(backups.Backups);
        Assert.Equal(schedule.LastBackupId, only.BackupId);
        Assert.Equal(BackupStatus.Completed, only.Status);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task When_the_scheduling_instance_stops_the_other_takes_over_at_once_and_runs_the_due_schedule_once()
    {
        var target = await env.CreateTargetAsync(rows: 20);
        await using var a = await env.StartAsync([target]);
        await using var b = await env.StartAsync([target]);
        LeaderElection Election(ServiceHost host) => host.App.Services.GetRequiredKeyedService<LeaderElection>(BackupScheduler.Role);
        ServiceHost? leader = null;
        Assert.True(await BackupCalls.EventuallyAsync(() =>
        {
            var leading = new[] { a, b }.Where(h => Election(h).Term is not null).ToList();
            Assert.True(leading.Count <= 1, "both instances schedule");
            leader = leading.SingleOrDefault();
            return Task.FromResult(leader is not null);
        }, TimeSpan.FromSeconds(20)));
        var before = Election(leader!).Term!;
        var other = leader == a ? b : a;

        var stopped = System.Diagnostics.Stopwatch.StartNew();
        await leader!.StopAsync(); // resigns
        using var wait = new CancellationTokenSource(BackupScheduler.TermTtl);
        var after = await Election(other).WaitForTermAsync(wait.Token);
        Assert.True(stopped.Elapsed < BackupScheduler.TermTtl / 3 + TimeSpan.FromSeconds(2), $"took over after {stopped.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(before.Term + 1, after.Term);
        // The deposed term can claim nothing any more.
        await using (var connection = new Npgsql.NpgsqlConnection(env.DatabaseConnectionString))
        {
            await connection.OpenAsync();
            Assert.False(await before.HoldsAsync(connection, null, CancellationToken.None));
            Assert.True(await after.HoldsAsync(connection, null, CancellationToken.None));
        }

        var client = other.Backups();
        await client.SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = "0 0 1 1 *" });
        await env.ScalarAsync<int>("UPDATE schedules SET next_run_at = now() - interval '1 second' WHERE target = @t RETURNING 1", ("t", target.Name));
        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            (await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name })).Schedules.Single().LastBackupId.Length > 0,
            TimeSpan.FromSeconds(30)));
        var schedule = (await client.ListSchedulesAsync(new ListSchedulesRequest { Target = target.Name })).Schedules.Single();
        Assert.Equal(schedule.LastBackupId, Assert.Single((await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name })).Backups).BackupId);
    }

    [Theory]
    [InlineData("*/15 * * * *", "2026-03-04T10:07:00", "2026-03-04T10:15:00")]
    [InlineData("0 3 * * *", "2026-03-04T03:00:00", "2026-03-05T03:00:00")]
    [InlineData("30 1 * * mon-fri", "2026-03-06T02:00:00", "2026-03-09T01:30:00")] // Friday after 01:30 → Monday
    [InlineData("0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00")]
    [InlineData("5,10 12 1 * 0", "2026-03-02T00:00:00", "2026-03-08T12:05:00")] // day-of-month OR Sunday
    [InlineData("0 */6 * jan,jul *", "2026-03-01T00:00:00", "2026-07-01T00:00:00")]
    [InlineData("0 0 * * 7", "2026-03-02T00:00:00", "2026-03-08T00:00:00")] // 7 is Sunday
    public void Cron_expressions_find_their_next_time(string cron, string after, string next)
    {
        Assert.True(CronExpression.TryParse(cron, out var expression, out var error), error);
        var from = DateTime.SpecifyKind(DateTime.Parse(after, System.Globalization.CultureInfo.InvariantCulture), DateTimeKind.Utc);
        Assert.Equal(DateTime.SpecifyKind(DateTime.Parse(next, System.Globalization.CultureInfo.InvariantCulture), DateTimeKind.Utc), expression!.NextAfter(from));
    }
}
