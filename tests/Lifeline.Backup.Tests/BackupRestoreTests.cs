using Grpc.Core;
using Lifeline.Backup.V1;
using Npgsql;

namespace Lifeline.Backup.Tests;

/// <summary>Backups restore to exactly the database as it was at the backup — full, and full + change chains.</summary>
public sealed class BackupRestoreTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Full_backup_then_changes_then_restore_gives_the_database_of_the_backup_moment()
    {
        var target = await env.CreateTargetAsync(rows: 500);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var atBackup = await target.ContentAsync();

        var (full, progress) = await client.CreateAsync(target.Name, BackupType.Full);

        // Metadata: checksum of the file as written, size, versions, per-table checksums.
        Assert.Contains(progress, p => p.Phase == "dump");
        Assert.Equal(BackupType.Full, full.Type);
        Assert.Equal("20260101000000_InitialSchema", full.SchemaVersion);
        Assert.StartsWith("15.", full.ServerVersion);
        Assert.True(full.SizeBytes > 0);
        Assert.True(full.DurationMs >= 0);
        Assert.Equal(4, full.Tables.Count);
        Assert.Equal(500, full.Tables.Single(t => t.Table == "public.items").RowCount);
        Assert.Equal(520, full.Tables.Single(t => t.Table == "public.tags").RowCount);
        var file = Path.Combine(env.BackupDirectory, target.Name, Guid.Parse(full.BackupId).ToString("N") + ".dump");
        Assert.Equal(full.SizeBytes, new FileInfo(file).Length);
        Assert.Equal(full.Sha256, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(await File.ReadAllBytesAsync(file))));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.Empty(Directory.GetFiles(env.BackupDirectory, "*.partial", SearchOption.AllDirectories));

        // The owning service keeps a pooled connection open across the restore.
        await using var owner = NpgsqlDataSource.Create(target.ConnectionString);
        await using (var before = owner.CreateCommand("SELECT count(*) FROM items"))
        {
            Assert.Equal(500L, await before.ExecuteScalarAsync());
        }

        await target.ExecuteAsync(SampleSchema.Changes(1));
        await target.ExecuteAsync("TRUNCATE events; DELETE FROM items WHERE id < 100;");
        var changed = await target.ContentAsync();
        Assert.NotEqual(atBackup, changed);

        var result = await client.RestoreAsync(target.Name, full.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));

        Assert.Equal(atBackup, await target.ContentAsync());
        Assert.Equal(full.Tables.OrderBy(t => t.Table).Select(t => (t.Table, t.RowCount, t.Checksum)),
            result.Tables.OrderBy(t => t.Table).Select(t => (t.Table, t.RowCount, t.Checksum)));
        // The replaced database is kept, with the changed data, for the operator.
        Assert.Equal(changed, await TestTarget.ContentOfAsync(target.ConnectionStringFor(result.ReplacedDatabase)));

        // The owner's old connection was closed by the switch; its pool reconnects to the restored database.
        long count = -1;
        for (var attempt = 0; attempt < 3 && count < 0; attempt++)
        {
            try
            {
                await using var after = owner.CreateCommand("SELECT count(*) FROM items");
                count = (long)(await after.ExecuteScalarAsync())!;
            }
            catch (NpgsqlException)
            {
                // the terminated connection fails once; the next one is new
            }
        }
        Assert.Equal(500L, count);
        // The identity sequence continues after the restored rows.
        await target.ExecuteAsync("INSERT INTO items (name) VALUES ('after restore')");
        Assert.Equal(501L, await target.ScalarAsync<long>("SELECT count(*) FROM items"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Full_incremental_and_differential_chains_restore_exactly_to_each_backup()
    {
        var target = await env.CreateTargetAsync(rows: 300);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();

        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        var states = new List<(Backup.V1.Backup Backup, SortedDictionary<string, string> Content)>();

        await target.ExecuteAsync(SampleSchema.Changes(1));
        var (inc1, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        states.Add((inc1, await target.ContentAsync()));

        await target.ExecuteAsync(SampleSchema.Changes(2));
        var (inc2, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        states.Add((inc2, await target.ContentAsync()));

        await target.ExecuteAsync(SampleSchema.Changes(3));
        await target.ExecuteAsync("TRUNCATE events RESTART IDENTITY; INSERT INTO events (data) VALUES ('\\x01'), ('\\x02');");
        var (diff, _) = await client.CreateAsync(target.Name, BackupType.Differential);
        states.Add((diff, await target.ContentAsync()));

        await target.ExecuteAsync(SampleSchema.Changes(4));
        var (inc3, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        states.Add((inc3, await target.ContentAsync()));

        // Nothing changed since: an empty incremental is still a valid link.
        var (inc4, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        states.Add((inc4, await target.ContentAsync()));

        // Chain links: an incremental builds on the previous backup, a differential on the full.
        Assert.Equal(full.BackupId, inc1.ParentBackupId);
        Assert.Equal(inc1.BackupId, inc2.ParentBackupId);
        Assert.Equal(full.BackupId, diff.ParentBackupId);
        Assert.Equal(diff.BackupId, inc3.ParentBackupId);
        Assert.All(states, s => Assert.Equal(full.BackupId, s.Backup.BaseBackupId));
        Assert.Equal(full.EndLsn, diff.StartLsn);
        Assert.Equal(inc1.EndLsn, inc2.StartLsn);
        Assert.Equal(0, inc4.ChangeCount);
        Assert.True(inc1.ChangeCount > 0);
        // The differential carries every change since the full.
        Assert.True(diff.ChangeCount > inc1.ChangeCount + inc2.ChangeCount);

        // Every backup restores to exactly its moment (restore the older ones last: each restore breaks the live chain).
        foreach (var (backup, content) in states.AsEnumerable().Reverse())
        {
            var result = await client.RestoreAsync(target.Name, backup.BackupId);
            env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
            Assert.Equal(content, await target.ContentAsync());
            Assert.Equal(backup.Tables.OrderBy(t => t.Table).Select(t => (t.Table, t.RowCount, t.Checksum)),
                result.Tables.OrderBy(t => t.Table).Select(t => (t.Table, t.RowCount, t.Checksum)));
        }

        // Sequences came back from the change files' setval lines: new rows do not collide with replayed ones.
        await target.ExecuteAsync("INSERT INTO items (name) VALUES ('after chain restore'); INSERT INTO events (data) VALUES ('\\x01');");

        // After a restore the old chain's slot is gone: a change backup needs a new full first.
        var refused = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Incremental), StatusCode.FailedPrecondition);
        Assert.Equal("CHANGE_SLOT_MISSING", refused.ErrorInfo().Reason);
        var (fresh, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(5));
        var (after, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        Assert.Equal(fresh.BackupId, after.ParentBackupId);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Verify_proves_every_kind_of_backup_by_a_restore_drill_and_stores_the_verdict()
    {
        var target = await env.CreateTargetAsync(rows: 200);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var (inc, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        await target.ExecuteAsync(SampleSchema.Changes(2));
        var (diff, _) = await client.CreateAsync(target.Name, BackupType.Differential);
        var live = await target.ContentAsync();

        foreach (var backup in new[] { full, inc, diff })
        {
            var verified = await client.VerifyAsync(backup.BackupId);
            Assert.Equal(VerificationStatus.Passed, verified.Verification);
            Assert.NotNull(verified.VerifiedAt);
            var stored = (await client.GetBackupAsync(new GetBackupRequest { BackupId = backup.BackupId })).Backup;
            Assert.Equal(VerificationStatus.Passed, stored.Verification);
        }
        // The drill used scratch databases and left none behind; the target is untouched.
        Assert.Equal(live, await target.ContentAsync());
        Assert.Equal(0L, await TestTarget.ScalarOnAsync<long>(env.Postgres.AdminConnectionString,
            $"SELECT count(*) FROM pg_database WHERE datname LIKE '{target.Database[..Math.Min(40, target.Database.Length)]}\\_v\\_%'"));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_restore_with_a_pre_restore_backup_keeps_the_state_it_replaced_restorable()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        var atBackup = await target.ContentAsync();
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var beforeRestore = await target.ContentAsync();

        var result = await client.RestoreAsync(target.Name, full.BackupId, preRestore: true);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(atBackup, await target.ContentAsync());
        var pre = (await client.GetBackupAsync(new GetBackupRequest { BackupId = result.PreRestoreBackupId })).Backup;
        Assert.Equal(BackupType.Full, pre.Type);
        Assert.Equal(BackupStatus.Completed, pre.Status);

        // Undo the restore: back to the state it replaced.
        var undo = await client.RestoreAsync(target.Name, pre.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(undo.ReplacedDatabase));
        Assert.Equal(beforeRestore, await target.ContentAsync());
        Assert.Equal(2L, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t AND status = 'completed'", ("t", target.Name)));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t AND error IS NOT NULL", ("t", target.Name)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_change_backup_is_refused_after_DDL_since_the_full()
    {
        var target = await env.CreateTargetAsync(rows: 50);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync("ALTER TABLE items ADD COLUMN color text");
        var count = await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t", ("t", target.Name));

        var refused = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Incremental), StatusCode.FailedPrecondition);
        Assert.Equal("SCHEMA_CHANGED", refused.ErrorInfo().Reason);
        Assert.Equal(count, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t", ("t", target.Name)));
    }
}
