using Grpc.Core;
using Lifeline.Backup;
using Lifeline.Backup.V1;
using Lifeline.Checkpoint.V1;
using Lifeline.Recovery.V1;
using Npgsql;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// Disaster-recovery backup and restore steps against a real backup service whose target is the checkpoint
/// service's own database: a run backs it up, a later run restores it (the checkpoint service, still running,
/// reconnects and serves the state of the backup moment).
/// </summary>
public sealed class DisasterRecoveryBackupTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_backup_step_then_a_restore_step_bring_the_checkpoint_database_back_to_the_backup_moment()
    {
        var backupDirectory = Path.Combine(Path.GetTempPath(), "lifeline-dr-backup-" + Guid.NewGuid().ToString("N")[..10]);
        var catalog = await env.Postgres.CreateDatabaseAsync("backup_for_recovery");
        var checkpointDatabase = new NpgsqlConnectionStringBuilder(env.CheckpointDatabase).Database!;
        var backupHost = await ServiceHost.StartAsync(BackupApplication.Build, new Dictionary<string, string?>
        {
            ["ConnectionStrings:backupdb"] = catalog,
            ["Backup:Directory"] = backupDirectory,
            ["Backup:PgBinDirectory"] = env.Postgres.BinDirectory,
            ["Backup:Targets:checkpointdb:Connection"] = env.CheckpointDatabase,
        });
        try
        {
            var recoveryHost = await env.StartRecoveryAsync(new Dictionary<string, string?> { ["services:backup:grpc:0"] = backupHost.Address.ToString() });
            var dr = env.DisasterRecoveryClient(recoveryHost);
            var checkpoints = env.CheckpointClient();
            var workflow = $"dr-{Guid.NewGuid():N}";
            var before = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
            {
                WorkflowId = workflow, Name = "before the backup", Type = CheckpointType.Milestone, State = new CheckpointState { Context = """{"stage":1}""" },
            })).Metadata;

            var backupRun = await RunAsync(dr, await CreateAsync(dr, "dr-backup", new DrStep { Name = "backup", Type = DrStepType.Backup, Critical = true, Targets = { "checkpointdb" } }));
            Assert.True(backupRun.Status == DrRunStatus.Completed, string.Join("; ", backupRun.Steps.Select(s => s.Message)));
            Assert.Contains("checkpointdb: full backup", backupRun.Steps[0].Message, StringComparison.Ordinal);

            // Restore uses only a backup whose restore drill passed: prove it.
            var backups = new BackupService.BackupServiceClient(backupHost.Channel);
            var full = Assert.Single((await backups.ListBackupsAsync(new ListBackupsRequest { Target = "checkpointdb" })).Backups);
            using (var verify = backups.VerifyBackup(new VerifyBackupRequest { BackupId = full.BackupId }))
            {
                await foreach (var _ in verify.ResponseStream.ReadAllAsync())
                {
                }
            }

            var after = (await checkpoints.CreateCheckpointAsync(new CreateCheckpointRequest
            {
                WorkflowId = workflow, Name = "after the backup", Type = CheckpointType.Milestone, State = new CheckpointState { Context = """{"stage":2}""" },
            })).Metadata;
            Assert.Equal(before.Id, after.ParentId);

            var restorePlan = await CreateAsync(dr, "dr-restore",
                new DrStep { Name = "restore", Type = DrStepType.Restore, Critical = true, Targets = { "checkpointdb" } },
                new DrStep { Name = "restore-own", Type = DrStepType.Restore, Critical = false, Targets = { "recoverydb" } });
            var restoreRun = await RunAsync(dr, restorePlan);
            Assert.Equal(DrRunStatus.CompletedWithFailures, restoreRun.Status);
            Assert.Equal(DrStepStatus.Succeeded, restoreRun.Steps[0].Status);
            Assert.Contains($"restored from {full.BackupId}", restoreRun.Steps[0].Message, StringComparison.Ordinal);
            Assert.Equal(DrStepStatus.Failed, restoreRun.Steps[1].Status);
            Assert.Contains("recoverydb: not restored from inside a disaster-recovery run", restoreRun.Steps[1].Message, StringComparison.Ordinal);

            // The checkpoint service reconnects to the switched-in database: the state of the backup moment.
            var head = await EventuallyAsync(async () =>
            {
                try
                {
                    return (await checkpoints.GetWorkflowAsync(new GetWorkflowRequest { WorkflowId = workflow })).Workflow;
                }
                catch (RpcException e) when (e.StatusCode == StatusCode.Unavailable)
                {
                    return null; // its pool still held connections to the replaced database
                }
            });
            Assert.Equal(before.Id, head.HeadCheckpointId);
            Assert.Equal(1, head.CheckpointCount);
            var missing = await Assert.ThrowsAsync<RpcException>(() => checkpoints.GetCheckpointAsync(new GetCheckpointRequest { CheckpointId = after.Id }).ResponseAsync);
            Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        }
        finally
        {
            await backupHost.DisposeAsync();
            // Replication slots pin databases; the restore kept the replaced one as <db>_old_<id>.
            await using var admin = new NpgsqlConnection(env.Postgres.AdminConnectionString);
            await admin.OpenAsync();
            await using (var slots = new NpgsqlCommand(
                "SELECT pg_drop_replication_slot(s.slot_name) FROM pg_replication_slots s JOIN pg_database d ON d.oid = s.datoid " +
                "WHERE d.datname LIKE @prefix AND NOT s.active", admin))
            {
                slots.Parameters.AddWithValue("prefix", checkpointDatabase + "%");
                await slots.ExecuteNonQueryAsync();
            }
            await using (var old = new NpgsqlCommand("SELECT datname FROM pg_database WHERE datname LIKE @prefix AND datname <> @current", admin))
            {
                old.Parameters.AddWithValue("prefix", checkpointDatabase + "%");
                old.Parameters.AddWithValue("current", checkpointDatabase);
                var names = new List<string>();
                await using (var r = await old.ExecuteReaderAsync())
                {
                    while (await r.ReadAsync())
                    {
                        names.Add(r.GetString(0));
                    }
                }
                foreach (var name in names)
                {
                    await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", admin);
                    await drop.ExecuteNonQueryAsync();
                }
            }
            await env.Postgres.DropDatabaseAsync(catalog);
            if (Directory.Exists(backupDirectory))
            {
                Directory.Delete(backupDirectory, recursive: true);
            }
        }
    }

    private static async Task<DisasterRecoveryPlan> CreateAsync(DisasterRecoveryService.DisasterRecoveryServiceClient dr, string prefix, params DrStep[] steps) =>
        (await dr.CreateDisasterRecoveryPlanAsync(new CreateDisasterRecoveryPlanRequest { Name = $"{prefix}-{Guid.NewGuid():N}", Steps = { steps } })).Plan;

    private static async Task<DisasterRecoveryRun> RunAsync(DisasterRecoveryService.DisasterRecoveryServiceClient dr, DisasterRecoveryPlan plan)
    {
        using var call = dr.RunDisasterRecoveryPlan(new RunDisasterRecoveryPlanRequest { PlanId = plan.Id, StartedBy = "tests" },
            deadline: DateTime.UtcNow.AddMinutes(5));
        DisasterRecoveryRun? run = null;
        await foreach (var message in call.ResponseStream.ReadAllAsync())
        {
            run = message.Run ?? run;
        }
        return run ?? throw new InvalidOperationException("the run stream ended without the run");
    }

    private static async Task<T> EventuallyAsync<T>(Func<Task<T?>> probe) where T : class
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (true)
        {
            if (await probe() is { } value)
            {
                return value;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException("the checkpoint service did not answer from the restored database within 20 s");
            }
            await Task.Delay(200);
        }
    }
}
