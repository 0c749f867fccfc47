using Grpc.Core;
using Lifeline.Backup.V1;

namespace Lifeline.Backup.Tests;

/// <summary>Retention keeps what it must; deletion never strands a backup that depends on another.</summary>
public sealed class RetentionAndDeletionTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    private async Task<long> RowsAsync(string target) =>
        await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t", ("t", target));

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Delete_refuses_a_backup_others_depend_on_unless_cascading()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var (inc1, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        var (inc2, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        var (diff, _) = await client.CreateAsync(target.Name, BackupType.Differential);

        var refused = await BackupCalls.RefusedAsync(() => client.DeleteBackupAsync(new DeleteBackupRequest { BackupId = inc1.BackupId }).ResponseAsync,
            StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_HAS_DEPENDENTS", refused.ErrorInfo().Reason);
        Assert.Equal(4, await RowsAsync(target.Name));

        // The newest link has no dependents.
        var deleted = await client.DeleteBackupAsync(new DeleteBackupRequest { BackupId = inc2.BackupId });
        Assert.Equal([inc2.BackupId], deleted.DeletedBackupIds);
        Assert.False(File.Exists(Path.Combine(env.BackupDirectory, target.Name, Guid.Parse(inc2.BackupId).ToString("N") + ".sql.gz")));

        var cascade = await client.DeleteBackupAsync(new DeleteBackupRequest { BackupId = full.BackupId, Cascade = true });
        Assert.Equal(new[] { full.BackupId, inc1.BackupId, diff.BackupId }.Order(), cascade.DeletedBackupIds.Order());
        Assert.Equal(0, await RowsAsync(target.Name));
        Assert.Empty(Directory.GetFiles(Path.Combine(env.BackupDirectory, target.Name)));
        // The chain's slot went with its full.
        Assert.Equal(0L, await target.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Retention_keeps_the_newest_per_type_the_last_verified_full_and_every_backup_a_kept_one_needs()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();

        var (f1, _) = await client.CreateAsync(target.Name, BackupType.Full);
        Assert.Equal(VerificationStatus.Passed, (await client.VerifyAsync(f1.BackupId)).Verification);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var (i1, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        var (f2, _) = await client.CreateAsync(target.Name, BackupType.Full);
        var (f3, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(2));
        var (i2, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        await target.ExecuteAsync(SampleSchema.Changes(3));
        var (i3, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        var (i4, _) = await client.CreateAsync(target.Name, BackupType.Incremental);

        var request = new ApplyRetentionRequest { Target = target.Name, DryRun = true };
        request.Rules.Add(new RetentionRule { Type = BackupType.Full, KeepCount = 1 });
        request.Rules.Add(new RetentionRule { Type = BackupType.Incremental, KeepCount = 1 });

        var dry = await client.ApplyRetentionAsync(request);
        Assert.Equal(7, await RowsAsync(target.Name));

        request.DryRun = false;
        var applied = await client.ApplyRetentionAsync(request);
        Assert.Equal(dry.DeletedBackupIds.Order(), applied.DeletedBackupIds.Order());
        // f1 is the last verified full: kept although only 1 full is wanted. i1 depends on it but is not needed: removed.
        // f2 is removed; f3 is the newest full; i4 the newest incremental, and it needs i3, i2 and f3.
        Assert.Equal(new[] { i1.BackupId, f2.BackupId }.Order(), applied.DeletedBackupIds.Order());
        Assert.Contains(f1.BackupId, applied.ProtectedBackupIds);
        Assert.Contains(i3.BackupId, applied.ProtectedBackupIds);
        Assert.Contains(i2.BackupId, applied.ProtectedBackupIds);
        Assert.Equal(5, await RowsAsync(target.Name));

        // What remains still restores.
        var expected = await target.ContentAsync();
        var result = await client.RestoreAsync(target.Name, i4.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(expected, await target.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Retention_by_age_removes_only_old_backups()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (old, _) = await client.CreateAsync(target.Name, BackupType.Full);
        var (recent, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await env.ScalarAsync<int>("UPDATE backups SET completed_at = now() - interval '10 days' WHERE id = @id RETURNING 1", ("id", Guid.Parse(old.BackupId)));

        var request = new ApplyRetentionRequest { Target = target.Name };
        request.Rules.Add(new RetentionRule { Type = BackupType.Full, KeepDays = 7 });
        var applied = await client.ApplyRetentionAsync(request);

        Assert.Equal([old.BackupId], applied.DeletedBackupIds);
        Assert.Equal(1L, await RowsAsync(target.Name));
        Assert.Equal(recent.BackupId, (await client.ListBackupsAsync(new ListBackupsRequest { Target = target.Name })).Backups.Single().BackupId);
    }
}
