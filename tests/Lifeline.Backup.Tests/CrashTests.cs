using Grpc.Core;
using Grpc.Net.Client;
using Lifeline.Testing;
using Lifeline.Backup.V1;
using Npgsql;

namespace Lifeline.Backup.Tests;

/// <summary>
/// A backup service process killed outright (SIGKILL, with its pg_dump) in the middle of a backup: nothing it leaves
/// behind may claim to be a backup, and the next instance cleans up and backs up again.
/// </summary>
public sealed class CrashTests(BackupEnvironment env) : IClassFixture<BackupEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_service_killed_mid_dump_leaves_nothing_usable_and_the_next_instance_cleans_up_and_backs_up_again()
    {
        var target = await env.CreateTargetAsync(rows: 2000);
        var expected = await target.ContentAsync();
        var port = FreePort.Next();
        var dll = BuiltAssemblies.Find("services/Lifeline.Backup", "Lifeline.Backup");
        var log = Path.Combine(Path.GetTempPath(), $"lifeline-backup-crash-{Guid.NewGuid():N}.log");
        using var service = BackgroundProcess.Start(BuiltAssemblies.DotnetHost(), [dll], Path.GetDirectoryName(dll)!, log,
            new Dictionary<string, string?>
            {
                ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
                ["ConnectionStrings__backupdb"] = env.DatabaseConnectionString,
                ["Backup__Directory"] = env.BackupDirectory,
                ["Backup__PgBinDirectory"] = SlowDumpBinDirectory(),
                [$"Backup__Targets__{target.Name}__Connection"] = target.ConnectionString,
            });
        using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
        var client = new BackupService.BackupServiceClient(channel.WithDeadlines().As(null));
        await WaitUntilServingAsync(client, service);

        // Caught mid-dump: running row, .partial file open, the chain's slot and snapshot created, pg_dump started.
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        using var call = client.CreateBackup(new CreateBackupRequest { Target = target.Name, Type = BackupType.Full }, cancellationToken: timeout.Token);
        do
        {
            Assert.True(await call.ResponseStream.MoveNext(timeout.Token), "the stream ended before the dump started");
        }
        while (call.ResponseStream.Current.Progress?.Phase != "dump");
        var id = await env.ScalarAsync<Guid>("SELECT id FROM backups WHERE target = @t AND status = 'running'", ("t", target.Name));
        var partial = Path.Combine(env.BackupDirectory, target.Name, $"{id:N}.dump.partial");
        Assert.True(await BackupCalls.EventuallyAsync(() => Task.FromResult(File.Exists(partial)), TimeSpan.FromSeconds(10)), "no .partial file while dumping");

        service.Kill(); // SIGKILL to the whole process tree: the service and its pg_dump

        // What the killed instance left: a running row nobody will finish, its .partial file, its replication slot.
        Assert.Equal("running", await env.ScalarAsync<string>("SELECT status FROM backups WHERE id = @id", ("id", id)));
        Assert.False(File.Exists(Path.Combine(env.BackupDirectory, target.Name, $"{id:N}.dump")));
        Assert.Equal(1L, await SlotCountAsync(target, id));

        // The next instance: its start-up sweep fails the run and removes the file; a restore of it is refused.
        await using var next = await env.StartAsync([target]);
        Assert.Equal("failed", await env.ScalarAsync<string>("SELECT status FROM backups WHERE id = @id", ("id", id)));
        Assert.StartsWith("interrupted", await env.ScalarAsync<string>("SELECT error FROM backups WHERE id = @id", ("id", id)));
        Assert.False(File.Exists(partial));
        Assert.Empty(Directory.GetFiles(Path.Combine(env.BackupDirectory, target.Name), $"{id:N}*"));
        var refused = await BackupCalls.RefusedAsync(() => next.Backups().RestoreAsync(target.Name, id.ToString()), StatusCode.FailedPrecondition);
        Assert.Equal("BACKUP_NOT_COMPLETED", refused.ErrorInfo().Reason);

        // It backs up again; the new chain drops the dead run's slot (it would only hold WAL back), and restores exactly.
        var (full, _) = await next.Backups().CreateAsync(target.Name, BackupType.Full);
        Assert.Equal(0L, await SlotCountAsync(target, id));
        await target.ExecuteAsync(SampleSchema.Changes(1));
        var result = await next.Backups().RestoreAsync(target.Name, full.BackupId);
        env.TrackDatabase(target.ConnectionStringFor(result.ReplacedDatabase));
        Assert.Equal(expected, await target.ContentAsync());
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM backups WHERE target = @t AND status = 'running'", ("t", target.Name)));
    }

    /// <summary>
    /// PostgreSQL's programs, with a pg_dump that waits 30 s before it runs the real one: the same backup, only slow
    /// enough that the kill lands while it dumps, on any machine.
    /// </summary>
    private string SlowDumpBinDirectory()
    {
        var directory = Path.Combine(env.BackupDirectory, "slow-pg-bin");
        Directory.CreateDirectory(directory);
        foreach (var tool in Directory.GetFiles(env.Postgres.BinDirectory))
        {
            var link = Path.Combine(directory, Path.GetFileName(tool));
            if (Path.GetFileName(tool) != "pg_dump" && !File.Exists(link))
            {
                File.CreateSymbolicLink(link, tool);
            }
        }
        var realDump = Path.Combine(env.Postgres.BinDirectory, "pg_dump");
        File.WriteAllText(Path.Combine(directory, "pg_dump"), $"""
            #!/bin/sh
            case "$1" in --version|-V) exec '{realDump}' "$@" ;; esac
            sleep 30
            exec '{realDump}' "$@"

            """);
        File.SetUnixFileMode(Path.Combine(directory, "pg_dump"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        return directory;
    }

    private static async Task<long> SlotCountAsync(TestTarget target, Guid backupId)
    {
        await using var connection = new NpgsqlConnection(target.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '%' || @id", connection);
        command.Parameters.AddWithValue("id", backupId.ToString("N"));
        return (long)(await command.ExecuteScalarAsync())!;
    }

    private static async Task WaitUntilServingAsync(BackupService.BackupServiceClient client, BackgroundProcess service)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                await client.ListBackupsAsync(new ListBackupsRequest(), deadline: DateTime.UtcNow.AddSeconds(5));
                return;
            }
            catch (RpcException) when (DateTime.UtcNow < deadline && !service.HasExited)
            {
                await Task.Delay(200);
            }
            catch (RpcException e)
            {
                throw new InvalidOperationException(
                    $"the backup service did not answer ({e.Status.Detail}); its log:\n{service.LogTail()}", e);
            }
        }
    }
}
