using Grpc.Core;
using Lifeline.Backup.V1;

namespace Lifeline.Backup.Tests;

/// <summary>A damaged backup fails verification and is refused by restore; an interrupted backup leaves nothing usable.</summary>
public sealed class CorruptionAndInterruptionTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    private string FileOf(Backup.V1.Backup backup, string extension) =>
        Path.Combine(env.BackupDirectory, backup.Target, Guid.Parse(backup.BackupId).ToString("N") + "." + extension);

    /// <summary>
    /// A transaction with an xid left open (rolled back on dispose): creating a logical slot waits for it. It locks no
    /// table; keep it short — slot creation anywhere in the cluster waits for it.
    /// </summary>
    internal static async Task<Npgsql.NpgsqlConnection> OpenWriterAsync(TestTarget target)
    {
        var connection = new Npgsql.NpgsqlConnection(target.ConnectionString);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand("BEGIN; SELECT pg_current_xact_id();", connection);
        await command.ExecuteNonQueryAsync();
        return connection;
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_corrupted_full_backup_fails_verification_and_restore_refuses_it_leaving_the_target_unchanged()
    {
        var target = await env.CreateTargetAsync(rows: 300);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        var (full, _) = await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var live = await target.ContentAsync();

        // Flip one byte in the middle of the dump.
        var path = FileOf(full, "dump");
        var bytes = await File.ReadAllBytesAsync(path);
        bytes[bytes.Length / 2] ^= 0xFF;
        await File.WriteAllBytesAsync(path, bytes);

        var verified = await client.VerifyAsync(full.BackupId);
        Assert.Equal(VerificationStatus.Failed, verified.Verification);
        Assert.Contains("checksum mismatch", verified.VerificationMessage);
        Assert.Equal("failed", await env.ScalarAsync<string>("SELECT verification FROM backups WHERE id = @id", ("id", Guid.Parse(full.BackupId))));

        var refused = await BackupCalls.RefusedAsync(() => client.RestoreAsync(target.Name, full.BackupId), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_CORRUPT", refused.ErrorInfo().Reason);
        Assert.Equal(live, await target.ContentAsync());
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM restore_runs WHERE target = @t", ("t", target.Name)));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_corrupted_incremental_fails_verification_of_itself_and_of_backups_that_depend_on_it()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var (inc1, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        await target.ExecuteAsync(SampleSchema.Changes(2));
        var (inc2, _) = await client.CreateAsync(target.Name, BackupType.Incremental);

        File.Delete(FileOf(inc1, "sql.gz"));

        Assert.Equal(VerificationStatus.Failed, (await client.VerifyAsync(inc1.BackupId)).Verification);
        var dependent = await client.VerifyAsync(inc2.BackupId);
        Assert.Equal(VerificationStatus.Failed, dependent.Verification);
        Assert.Contains(inc1.BackupId, dependent.VerificationMessage);
        var refused = await BackupCalls.RefusedAsync(() => client.RestoreAsync(target.Name, inc2.BackupId), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_CORRUPT", refused.ErrorInfo().Reason);
        Assert.Equal(inc1.BackupId, refused.ErrorInfo().Metadata["backup_id"]);
        // A differential cannot be built from a corrupt segment either, and fails without leaving a file.
        var diff = await BackupCalls.RefusedAsync(() => client.CreateAsync(target.Name, BackupType.Differential), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_CORRUPT", diff.ErrorInfo().Reason);
        Assert.Empty(Directory.GetFiles(env.BackupDirectory, "*.partial", SearchOption.AllDirectories));
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_backup_cancelled_mid_stream_is_failed_in_the_catalog_and_leaves_no_file()
    {
        var target = await env.CreateTargetAsync(rows: 1000);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        // An open writing transaction holds the slot's snapshot back, so the backup is surely mid-way when cancelled.
        var blocker = await OpenWriterAsync(target);

        using var cts = new CancellationTokenSource();
        using var call = client.CreateBackup(new CreateBackupRequest { Target = target.Name, Type = BackupType.Full }, cancellationToken: cts.Token);
        RpcException ex;
        try
        {
            ex = await Assert.ThrowsAsync<RpcException>(async () =>
            {
                await foreach (var message in call.ResponseStream.ReadAllAsync(cts.Token))
                {
                    if (message.Progress?.Phase is "snapshot" or "dump")
                    {
                        await cts.CancelAsync();
                    }
                }
            });
        }
        finally
        {
            await blocker.DisposeAsync();
        }
        Assert.Equal(StatusCode.Cancelled, ex.StatusCode);

        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status = 'failed'", ("t", target.Name)) == 1,
            TimeSpan.FromSeconds(20)));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status <> 'failed'", ("t", target.Name)));
        Assert.Empty(Directory.Exists(Path.Combine(env.BackupDirectory, target.Name))
            ? Directory.GetFiles(Path.Combine(env.BackupDirectory, target.Name)) : []);
        // The failed full's slot is gone too: a change backup has nothing to build on.
        Assert.Equal(0L, await target.ScalarAsync<long>("SELECT count(*) FROM pg_replication_slots WHERE database = current_database()"));
        // The cancelled run lets go of the target's lock right after it is marked failed: until then an incremental
        // is ABORTED (BACKUP_IN_PROGRESS, with RetryInfo), as any caller retrying would see.
        Google.Rpc.Status? refused = null;
        Assert.True(await BackupCalls.EventuallyAsync(async () =>
        {
            try
            {
                await client.CreateAsync(target.Name, BackupType.Incremental);
                return false;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition)
            {
                refused = e.GetRpcStatus();
                return true;
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.Aborted)
            {
                return false;
            }
        }, TimeSpan.FromSeconds(20)));
        Assert.Equal("NO_FULL_BACKUP", refused!.ErrorInfo().Reason);
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_interrupted_incremental_loses_no_change_the_next_one_captures_them()
    {
        var target = await env.CreateTargetAsync(rows: 100);
        await using var host = await env.StartAsync([target]);
        var client = host.Backups();
        await client.CreateAsync(target.Name, BackupType.Full);
        await target.ExecuteAsync(SampleSchema.Changes(1));

        await using (var blocker = await OpenWriterAsync(target))
        using (var cts = new CancellationTokenSource())
        {
            using var call = client.CreateBackup(new CreateBackupRequest { Target = target.Name, Type = BackupType.Incremental }, cancellationToken: cts.Token);
            await Assert.ThrowsAsync<RpcException>(async () =>
            {
                await foreach (var message in call.ResponseStream.ReadAllAsync(cts.Token))
                {
                    if (message.Progress?.Phase == "changes")
                    {
                        await cts.CancelAsync();
                    }
                }
            });
        }
        Assert.True(await BackupCalls.EventuallyAsync(async () =>
            await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status = 'running'", ("t", target.Name)) == 0,
            TimeSpan.FromSeconds(20)));

        await target.ExecuteAsync(SampleSchema.Changes(2));
        var expected = await target.ContentAsync();
        var (inc, _) = await client.CreateAsync(target.Name, BackupType.Incremental);
        var result = await client.RestoreAsync(target.Name, inc.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(expected, await target.ContentAsync());
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_backup_abandoned_by_a_crashed_instance_is_failed_and_its_partial_file_removed_at_start()
    {
        var target = await env.CreateTargetAsync(rows: 10);
        var id = Guid.NewGuid();
        var directory = Path.Combine(env.BackupDirectory, target.Name);
        Directory.CreateDirectory(directory);
        var partial = Path.Combine(directory, id.ToString("N") + ".dump.partial");
        await File.WriteAllTextAsync(partial, "half a dump");
        var stray = Path.Combine(directory, Guid.NewGuid().ToString("N") + ".sql.gz.partial");
        await File.WriteAllTextAsync(stray, "no row at all");

        // What a killed instance leaves: a running row (its lock died with its connection) and a .partial file.
        await using (var host0 = await env.StartAsync([target]))
        {
        }
        await env.ScalarAsync<int>("""
            INSERT INTO backups (id, target, type, status, base_id, start_lsn, end_lsn, file_name, size_bytes, started_at, duration_ms, change_count, table_checksums)
            VALUES (@id, @t, 'full', 'running', @id, 0, 0, @f, 0, now(), 0, 0, '[]') RETURNING 1
            """, ("id", id), ("t", target.Name), ("f", $"{target.Name}/{id:N}.dump"));

        await using var host = await env.StartAsync([target]);
        Assert.Equal("failed", await env.ScalarAsync<string>("SELECT status FROM backups WHERE id = @id", ("id", id)));
        Assert.False(File.Exists(partial));
        Assert.False(File.Exists(stray));
        var refused = await BackupCalls.RefusedAsync(() => host.Backups().RestoreAsync(target.Name, id.ToString()), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_NOT_COMPLETED", refused.ErrorInfo().Reason);
    }
}
