using Grpc.Core;
using Lifeline.Backup.Maintenance;
using Lifeline.Backup.V1;
using Microsoft.Extensions.DependencyInjection;

namespace Lifeline.Backup.Tests;

/// <summary>Racing operations on one target: one wins, the other is ABORTED or builds on the winner — never on the same range.</summary>
public sealed class RaceTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Two_restores_of_one_target_at_once_one_is_aborted_and_the_target_is_the_winners()
    {
        var target = await env.CreateTargetAsync(rows: 2000);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        var expected = await target.ContentAsync();
        await target.ExecuteAsync(SampleSchema.Changes(1));

        var restores = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
        {
            try
            {
                return (await client.RestoreAsync(target.Name, full.BackupId), (RpcException?)null);
            }
            catch (RpcException ex)
            {
                return ((RestoreResult?)null, ex);
            }
        })).ToArray();
        var outcomes = await Task.WhenAll(restores);

        var won = outcomes.Where(o => o.Item1 is not null).ToList();
        var lost = outcomes.Where(o => o.Item2 is not null).ToList();
        foreach (var w in won)
        {
            env.TrackDatabase(target.ConnectionStringFor(w.Item1!.ReplacedDatabase));
        }
        // Both may succeed only one after the other; at least one wins and every loser is ABORTED.
        Assert.NotEmpty(won);
        Assert.All(lost, l =>
        {
            Assert.Equal(StatusCode.Aborted, l.Item2!.StatusCode);
            Assert.Contains(l.Item2.GetRpcStatus()!.ErrorInfo().Reason, new[] { "RESTORE_IN_PROGRESS", "BACKUP_IN_PROGRESS" });
        });
        Assert.Equal(expected, await target.ContentAsync());
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t AND status = 'running'", ("t", target.Name)));
        Assert.Equal((long)won.Count, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t AND status = 'completed'", ("t", target.Name)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_restore_while_another_holds_the_target_is_aborted_and_changes_nothing()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var live = await target.ContentAsync();

        // A long backup of the target is running: its incremental waits on an open writing transaction.
        await using var blocker = await CorruptionAndInterruptionTests.OpenWriterAsync(target);
        using var cts = new CancellationTokenSource();
        var running = client.CreateAsync(target.Name, BackupType.Incremental, cts.Token);
        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status = 'running'", ("t", target.Name)) == 1,
            TimeSpan.FromSeconds(10)));

        var refused = await BackupCalls.RefusedAsync(() => client.RestoreAsync(target.Name, full.BackupId), StatusCode.Aborted);
        Assert.Equal("BACKUP_IN_PROGRESS", refused.ErrorInfo().Reason);
        var second = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Incremental), StatusCode.Aborted);
        Assert.Equal("BACKUP_IN_PROGRESS", second.ErrorInfo().Reason);
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t", ("t", target.Name)));

        await using (var rollback = new Npgsql.NpgsqlCommand("ROLLBACK", blocker))
        {
            await rollback.ExecuteNonQueryAsync();
        }
        var (inc, _) = await running;
        Assert.Equal(full.BackupId, inc.ParentBackupId);
        Assert.Equal(live, await target.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Concurrent_incrementals_never_claim_the_same_change_range_and_lose_nothing()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        await using var second = await env.StartAsync([target]);
        var clients = new[] { host.Backups(), second.Backups() };
        await clients[0].CreateAsync(target.Name, BackupType.Full);

        var completed = new List<Backup.V1.Backup>();
        for (var round = 1; round <= 4; round++)
        {
            await target.ExecuteAsync(SampleSchema.Changes(round));
            var attempts = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
            {
                try
                {
                    return (await clients[i % 2].CreateAsync(target.Name, BackupType.Incremental)).Backup;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.Aborted)
                {
                    return null;
                }
            })));
            var done = attempts.Where(a => a is not null).Select(a => a!).ToList();
            Assert.NotEmpty(done);
            completed.AddRange(done);
        }

        // The completed incrementals form one chain of adjacent, non-overlapping ranges.
        var byParent = completed.GroupBy(b => b.ParentBackupId).ToList();
        Assert.All(byParent, g => Assert.Single(g));
        foreach (var b in completed.Where(b => completed.Any(p => p.BackupId == b.ParentBackupId)))
        {
            Assert.Equal(completed.Single(p => p.BackupId == b.ParentBackupId).EndLsn, b.StartLsn);
        }
        var expected = await target.ContentAsync();
        var last = completed.Single(b => completed.All(c => c.ParentBackupId != b.BackupId));
        var result = await clients[0].RestoreAsync(target.Name, last.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(expected, await target.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Another_instances_sweep_racing_backups_never_deletes_a_live_backups_file()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        await using var second = await env.StartAsync([target]);
        var client = host.Backups();
        await client.CreateAsync(target.Name, BackupType.Full);

        // The other instance sweeps for abandoned runs without pause while this one takes backup after backup.
        var sweeper = second.App.Services.GetRequiredService<StaleRunSweeper>();
        using var stop = new CancellationTokenSource();
        var sweeps = 0;
        var sweeping = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                await sweeper.SweepAsync(CancellationToken.None);
                sweeps++;
            }
        });
        var chain = new List<Backup.V1.Backup>();
        try
        {
            for (var round = 1; round <= 12; round++)
            {
                await target.ExecuteAsync(SampleSchema.Changes(round));
                chain.Add((await client.CreateAsync(target.Name, round % 4 == 0 ? BackupType.Differential : BackupType.Incremental)).Backup);
            }
        }
        finally
        {
            await stop.CancelAsync();
            await sweeping;
        }

        Assert.True(sweeps > 12, $"only {sweeps} sweeps ran");
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status <> 'completed'", ("t", target.Name)));
        var expected = await target.ContentAsync();
        var result = await client.RestoreAsync(target.Name, chain[^1].BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(expected, await target.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Racing_schedule_writes_and_deletes_leave_one_row_per_target_and_type()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var a = await env.StartAsync([target]);
        await using var b = await env.StartAsync([target]);
        var clients = new[] { a.Backups(), b.Backups() };
        var crons = new[] { "0 1 * * *", "0 2 * * *", "*/5 * * * *", "15 3 * * 1-5" };
        var outcomes = await Task.WhenAll(Enumerable.Range(0, 16).Select(i => Task.Run(async () =>
        {
            try
            {
                await clients[i % 2].SetScheduleAsync(new SetScheduleRequest { Target = target.Name, Type = BackupType.Full, Cron = crons[i % crons.Length] });
                return StatusCode.OK;
            }
            catch (RpcException ex)
            {
                return ex.StatusCode;
            }
        })));
        Assert.All(outcomes, o => Assert.Contains(o, new[] { StatusCode.OK, StatusCode.Aborted }));
        Assert.Contains(StatusCode.OK, outcomes);
        var rows = await env.ScalarAsync<long>("SELECT count(*) FROM schedules WHERE target = @t", ("t", target.Name));
        Assert.Equal(1L, rows);
        var cron = await env.ScalarAsync<string>("SELECT cron FROM schedules WHERE target = @t", ("t", target.Name));
        Assert.Contains(cron, crons);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_delete_racing_a_backup_of_the_same_target_is_aborted_or_serialised_never_orphaning_a_chain()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));

        var incremental = Task.Run(async () =>
        {
            try
            {
                return (await client.CreateAsync(target.Name, BackupType.Incremental)).Backup;
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Aborted or StatusCode.FailedPrecondition)
            {
                return null;
            }
        });
        var delete = Task.Run(async () =>
        {
            try
            {
                return (await client.DeleteBackupAsync(new DeleteBackupRequest { BackupId = full.BackupId })).DeletedBackupIds.Count;
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Aborted or StatusCode.FailedPrecondition)
            {
                return 0;
            }
        });
        var (inc, deleted) = (await incremental, await delete);

        // Whatever the order, no completed backup points at a parent that is gone.
        Assert.Equal(0L, await env.ScalarAsync<long>("""
            SELECT count(*) FROM backups b WHERE b.target = @t AND b.status = 'completed' AND b.parent_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM backups p WHERE p.id = b.parent_id AND p.status = 'completed')
            """, ("t", target.Name)));
        Assert.True(inc is not null || deleted == 1);
        Assert.False(inc is not null && deleted == 1);
    }
}
