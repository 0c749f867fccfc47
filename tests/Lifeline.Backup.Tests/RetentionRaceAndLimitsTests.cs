using Google.Protobuf.WellKnownTypes;
using Grpc.Core;
using Lifeline.Backup.V1;
using Lifeline.Testing;

namespace Lifeline.Backup.Tests;

/// <summary>
/// Racing retention: retention calls of one target run one after another — none is refused naming an operation that
/// is not running, and each backup is deleted once. A refusal names what really holds the target. Also the bounds of
/// ApplyRetention and ListBackups: counts first, page tokens and times only as issued or valid.
/// </summary>
public sealed class RetentionRaceAndLimitsTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    private static DateTime Deadline => DateTime.UtcNow.AddSeconds(60);

    private static ApplyRetentionRequest KeepNewestFull(string target, bool dryRun = false) => new()
    {
        Target = target, DryRun = dryRun, Rules = { new RetentionRule { Type = BackupType.Full, KeepCount = 1 } },
    };

    [Fact(Timeout = 300_000)]
    public async Task Concurrent_retentions_of_one_target_all_run_and_delete_each_backup_once()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        await using var second = await env.StartAsync([target]);
        var clients = new[] { host.Backups(), second.Backups() };
        var fulls = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            fulls.Add((await clients[0].CreateAsync(target.Name, BackupType.Full)).Backup.BackupId);
        }

        // Round 0 deletes; the dry-run rounds after it race again over what is left.
        var deleted = new List<string>();
        for (var round = 0; round < 4; round++)
        {
            var dryRun = round > 0;
            var outcomes = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => Task.Run(async () =>
            {
                try
                {
                    return (await clients[i % 2].ApplyRetentionAsync(KeepNewestFull(target.Name, dryRun), deadline: Deadline), (RpcException?)null);
                }
                catch (RpcException ex)
                {
                    return ((ApplyRetentionResponse?)null, ex);
                }
            })));
            var refused = outcomes.Where(o => o.Item2 is not null).Select(o => $"{o.Item2!.StatusCode} {o.Item2.GetRpcStatus()?.ErrorInfo().Reason}: {o.Item2.Status.Detail}");
            Assert.True(outcomes.All(o => o.Item1 is not null), $"round {round}: " + string.Join("; ", refused));
            if (!dryRun)
            {
                deleted.AddRange(outcomes.SelectMany(o => o.Item1!.DeletedBackupIds));
            }
            else
            {
                Assert.All(outcomes, o => Assert.Empty(o.Item1!.DeletedBackupIds));
            }
        }

        Assert.Equal(fulls.Take(3).Order(), deleted.Order()); // each once, by whichever call came first
        Assert.Equal([fulls[3]], await new BackupCalls.Lister(host).AllAsync(target.Name));
    }

    [Fact(Timeout = 300_000)]
    public async Task Retention_while_a_backup_of_the_target_runs_is_refused_at_once_naming_the_backup_and_deletes_nothing()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var older = (await client.CreateAsync(target.Name, BackupType.Full)).Backup.BackupId;
        await client.CreateAsync(target.Name, BackupType.Full);

        // A long backup of the target is running: its incremental waits on an open writing transaction.
        await using var blocker = await CorruptionAndInterruptionTests.OpenWriterAsync(target);
        var running = client.CreateAsync(target.Name, BackupType.Incremental);
        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status = 'running'", ("t", target.Name)) == 1,
            TimeSpan.FromSeconds(20)));

        var (error, elapsed) = await Refusals.TimedAsync(() => client.ApplyRetentionAsync(KeepNewestFull(target.Name), deadline: Deadline).ResponseAsync,
            StatusCode.Aborted);
        Assert.Equal("BACKUP_IN_PROGRESS", error.GetRpcStatus()!.ErrorInfo().Reason);
        Assert.True(elapsed < TimeSpan.FromSeconds(2), $"the refusal took {elapsed}");
        Assert.Equal(3L, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t", ("t", target.Name)));

        await using (var rollback = new Npgsql.NpgsqlCommand("ROLLBACK", blocker))
        {
            await rollback.ExecuteNonQueryAsync();
        }
        await running;
        // Once the backup has finished, the same retention runs: the older full is needed by nothing.
        var applied = await client.ApplyRetentionAsync(KeepNewestFull(target.Name), deadline: Deadline);
        Assert.Equal([older], applied.DeletedBackupIds);
    }

    [Fact(Timeout = 120_000)]
    public async Task ApplyRetention_with_100000_rules_is_refused_before_any_rule_is_checked()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        await host.Backups().CreateAsync(target.Name, BackupType.Full);
        var request = new ApplyRetentionRequest { Target = target.Name };
        request.Rules.AddRange(Enumerable.Range(0, 100_000).Select(_ => new RetentionRule { Type = (BackupType)42, KeepCount = -1 }));

        var (error, elapsed) = await Refusals.TimedAsync(() => host.Backups().ApplyRetentionAsync(request, deadline: Deadline).ResponseAsync,
            StatusCode.InvalidArgument);

        Assert.True(elapsed < TimeSpan.FromSeconds(2), $"the refusal took {elapsed}");
        Assert.True(error.WireBytes() < 4096, $"the refusal took {error.WireBytes()} bytes");
        var violation = Assert.Single(error.GetRpcStatus()!.BadRequest().FieldViolations);
        Assert.Equal("rules", violation.Field);
        Assert.Contains("100000", violation.Description, StringComparison.Ordinal);
        Assert.Equal(1L, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t", ("t", target.Name)));
    }

    [Fact(Timeout = 300_000)]
    public async Task ListBackups_pages_with_the_tokens_it_issued_and_refuses_every_other_token_and_invalid_times()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        for (var i = 0; i < 3; i++)
        {
            await client.CreateAsync(target.Name, BackupType.Full);
        }
        var seen = new List<string>();
        var token = "";
        do
        {
            var page = await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name, PageSize = 1, PageToken = token }, deadline: Deadline);
            seen.AddRange(page.Backups.Select(b => b.BackupId));
            token = page.NextPageToken;
        }
        while (token.Length > 0);
        Assert.Equal(3, seen.Distinct().Count());

        var issued = (await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name, PageSize = 1 }, deadline: Deadline)).NextPageToken;
        var forged = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes($"{DateTime.UtcNow.Ticks}:{Guid.NewGuid():N}"));
        foreach (var bad in new[] { "AAAA", "////", forged, issued[..^1], issued + "AA", new string('A', 100_000) })
        {
            var status = await BackupCalls.RefusedAsync(() => client.ListBackupsAsync(new ListBackupsRequest { PageToken = bad }, deadline: Deadline).ResponseAsync,
                StatusCode.InvalidArgument);
            Assert.Equal("page_token", Assert.Single(status.BadRequest().FieldViolations).Field);
        }
        var badTime = new Timestamp { Seconds = -62_135_596_801 };
        var times = await BackupCalls.RefusedAsync(() => client.ListBackupsAsync(
            new ListBackupsRequest { StartedAfter = badTime, StartedBefore = new Timestamp { Nanos = 1_000_000_000 } }, deadline: Deadline).ResponseAsync,
            StatusCode.InvalidArgument);
        Assert.Equal(["started_after", "started_before"], times.BadRequest().FieldViolations.Select(v => v.Field));
    }
}
