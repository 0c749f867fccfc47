using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using Lifeline.Backup.Catalog;
using Lifeline.Backup.Data;
using Lifeline.Backup.Options;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.Extensions.Options;
using Npgsql;
using Lifeline.Backup.Telemetry;

namespace Lifeline.Backup.Engine;

/// <summary>Takes full, incremental and differential backups of a target.</summary>
public sealed partial class BackupRunner(
    BackupCatalog catalog, TargetDirectory targets, TargetLocks locks, BackupFiles files, PgTools pg,
    Maintenance.StaleRunSweeper sweeper, IOptions<BackupOptions> options, BackupTelemetry telemetry, ILogger<BackupRunner> logger)
{
    /// <summary>Takes a backup under the target's lock; another operation on the target → ABORTED.</summary>
    public async Task<BackupEntity> CreateAsync(string targetName, string type, ProgressSink progress, CancellationToken ct)
    {
        var target = targets.Get(targetName);
        await using var held = await locks.AcquireAsync(target.Name, TargetOperation.Backup, ct);
        return await CreateLockedAsync(target, type, progress, ct);
    }

    /// <summary>Takes a backup; the caller holds the target's lock.</summary>
    internal async Task<BackupEntity> CreateLockedAsync(BackupTarget target, string type, ProgressSink progress, CancellationToken ct)
    {
        // Every refusal happens here, before anything is written.
        BackupEntity? full = null, latest = null;
        if (type != BackupKinds.Full)
        {
            full = await catalog.LatestFullAsync(target.Name, ct)
                ?? throw new PreconditionFailedException("NO_FULL_BACKUP",
                    $"Target '{target.Name}' has no completed full backup for a{(type == BackupKinds.Incremental ? "n" : "")} {type} backup to build on.");
            latest = await catalog.LatestInChainAsync(full, ct);
            await using var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database));
            await sql.OpenAsync(ct);
            await ChangeCapture.CheckSlotAsync(sql, full.SlotName!, latest.EndLsn, ct);
            var state = await DatabaseInspector.ReadSchemaFingerprintAsync(sql, ct);
            if (state != full.SchemaFingerprint)
            {
                throw SchemaChanged(target);
            }
        }

        // Holding the target's lock, any running backup of the target belongs to a dead instance.
        await sweeper.AbandonAsync(target.Name, ct, includeRestores: false);
        var id = Guid.NewGuid();
        var backup = new BackupEntity
        {
            Id = id,
            Target = target.Name,
            Type = type,
            Status = BackupKinds.Running,
            ParentId = type switch { BackupKinds.Incremental => latest!.Id, BackupKinds.Differential => full!.Id, _ => null },
            BaseId = full?.Id ?? id,
            StartLsn = type switch { BackupKinds.Incremental => latest!.EndLsn, BackupKinds.Differential => full!.EndLsn, _ => 0 },
            EndLsn = type switch { BackupKinds.Incremental => latest!.EndLsn, BackupKinds.Differential => full!.EndLsn, _ => 0 },
            FileName = BackupFiles.FileNameOf(target.Name, id, type == BackupKinds.Full ? "dump" : "sql.gz"),
            StartedAt = DateTime.UtcNow,
        };
        await catalog.InsertRunningAsync(backup, ct);
        LogStarted(logger, type, target.Name, id);
        using var activity = BackupTelemetry.Source.StartActivity("backup.create");
        activity?.SetTag(BackupTelemetry.TargetTag, target.Name);
        activity?.SetTag(BackupTelemetry.TypeTag, type);
        activity?.SetTag("lifeline.backup.id", id.ToString());
        var clock = Stopwatch.StartNew();
        try
        {
            await progress(new BackupProgress("start", 0, 0, $"{type} backup {id} of {target.Name}"));
            if (type == BackupKinds.Full)
            {
                await TakeFullAsync(target, backup, progress, ct);
            }
            else
            {
                await TakeChangesAsync(target, backup, full!, latest!, progress, ct);
            }
            backup.DurationMs = clock.ElapsedMilliseconds;
            LogCompleted(logger, type, target.Name, id, backup.SizeBytes, backup.DurationMs);
            telemetry.BackupEnded(target.Name, type, completed: true, clock.Elapsed, backup.SizeBytes);
            return backup;
        }
        catch (Exception ex)
        {
            files.DeletePartial(backup.FileName);
            if ((await catalog.GetAsync(id, CancellationToken.None)).Status != BackupKinds.Completed)
            {
                // Not cataloged as completed: no file of it may remain for a restore to pick.
                files.Delete(backup.FileName);
                await catalog.MarkFailedAsync(id, ex is OperationCanceledException ? "interrupted: the backup was cancelled" : ex.Message);
            }
            LogFailed(logger, type, target.Name, id, ex);
            telemetry.BackupEnded(target.Name, type, completed: false, clock.Elapsed, 0);
            activity?.SetStatus(ActivityStatusCode.Error, ex.GetType().Name);
            throw;
        }
    }

    private async Task TakeFullAsync(BackupTarget target, BackupEntity backup, ProgressSink progress, CancellationToken ct)
    {
        var slotName = target.SlotPrefix + backup.Id.ToString("N");
        long estimate;
        await using (var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database)))
        {
            await sql.OpenAsync(ct);
            await DatabaseInspector.PrepareChangeCaptureAsync(sql, ct);
            await using var size = new NpgsqlCommand("SELECT pg_database_size(current_database())", sql);
            estimate = Math.Max(1, (long)(await size.ExecuteScalarAsync(ct))! / 4);
        }

        try
        {
            await progress(new BackupProgress("snapshot", 2, 0, "creating the change slot and its snapshot"));
            DatabaseState state;
            await using (var snapshot = await ChangeCapture.CreateChainSlotAsync(target, slotName, ct))
            {
                await using var file = files.Create(backup.FileName);
                await progress(new BackupProgress("dump", 5, 0, $"pg_dump in snapshot {snapshot.SnapshotName}"));
                // The checksums read the same exported snapshot as pg_dump, at the same time (two backends, two cores).
                using var checksumCancel = CancellationTokenSource.CreateLinkedTokenSource(ct);
                var checksums = ReadStateInSnapshotAsync(target, snapshot.SnapshotName, checksumCancel.Token);
                try
                {
                    using (var reporter = ReportBytes(progress, "dump", 5, 85, estimate, () => file.BytesWritten, ct))
                    {
                        await pg.DumpAsync(target.ConnectionStringFor(target.Database), snapshot.SnapshotName, options.Value.CompressionLevel, file, ct);
                    }
                }
                catch
                {
                    // Never leave the checksum query running once the dump has failed.
                    await checksumCancel.CancelAsync();
                    await Task.WhenAny(checksums);
                    throw;
                }
                await progress(new BackupProgress("checksums", 86, file.BytesWritten, "per-table checksums in the dump's snapshot"));
                state = await checksums;
                var (size, sha) = await file.CompleteAsync(ct);
                backup.SizeBytes = size;
                backup.Sha256 = sha;
                backup.StartLsn = backup.EndLsn = snapshot.Lsn;
            }

            backup.SlotName = slotName;
            Record(backup, state);
            await progress(new BackupProgress("catalog", 95, backup.SizeBytes, "recording the backup"));
            await catalog.CompleteAsync(backup, ct);
        }
        catch
        {
            await DropSlotQuietlyAsync(target, slotName);
            throw;
        }

        // A new chain starts here: older chains' slots would only hold WAL back.
        await using (var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database)))
        {
            await sql.OpenAsync(CancellationToken.None);
            await ChangeCapture.DropOtherSlotsAsync(sql, target, slotName, CancellationToken.None);
        }
    }

    private async Task TakeChangesAsync(BackupTarget target, BackupEntity backup, BackupEntity full, BackupEntity latest,
        ProgressSink progress, CancellationToken ct)
    {
        long priorChanges = 0;
        await using var file = files.Create(backup.FileName);
        var gzip = new GZipStream(file, options.Value.CompressionLevel switch
        {
            0 => CompressionLevel.NoCompression,
            <= 3 => CompressionLevel.Fastest,
            <= 7 => CompressionLevel.Optimal,
            _ => CompressionLevel.SmallestSize,
        }, leaveOpen: true);
        await using var writer = new StreamWriter(gzip, new UTF8Encoding(false), 1 << 16);
        await writer.WriteLineAsync($"-- lifeline {backup.Type} backup {backup.Id:N} of {target.Name}, chain {full.Id:N}");

        if (backup.Type == BackupKinds.Differential)
        {
            // Slot consumption is destructive: the changes since the full that earlier backups took are read from their files.
            foreach (var segment in await catalog.SegmentsSinceFullAsync(latest, ct))
            {
                await progress(new BackupProgress("changes", 5, file.BytesWritten, $"carrying over backup {segment.Id}"));
                if (await files.Sha256Async(segment.FileName, ct) != segment.Sha256)
                {
                    throw new PreconditionFailedException("BACKUP_CORRUPT",
                        $"Backup {segment.Id}, whose changes a differential backup carries over, fails its checksum.");
                }
                await using var source = new GZipStream(File.OpenRead(files.PathOf(segment.FileName)), CompressionMode.Decompress);
                using var reader = new StreamReader(source, Encoding.UTF8);
                string? line;
                while ((line = await reader.ReadLineAsync(ct)) is not null)
                {
                    await writer.WriteLineAsync(line);
                }
                priorChanges += segment.ChangeCount;
            }
        }

        await progress(new BackupProgress("changes", 10, file.BytesWritten, "reading changes from the replication slot"));
        var lastReport = Stopwatch.StartNew();
        await using var session = await ChangeCapture.CaptureAsync(target, full.SlotName!, latest.EndLsn, writer,
            async (sql, tx) =>
            {
                var state = await DatabaseInspector.ReadStateAsync(sql, tx, ct);
                return state.SchemaFingerprint == full.SchemaFingerprint ? state : throw SchemaChanged(target);
            },
            async count =>
            {
                if (lastReport.ElapsedMilliseconds >= 500)
                {
                    lastReport.Restart();
                    await progress(new BackupProgress("changes", 50, file.BytesWritten, $"{count} changes"));
                }
            }, ct);

        await using (var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database)))
        {
            await sql.OpenAsync(ct);
            foreach (var statement in await DatabaseInspector.SequenceStatementsAsync(sql, ct))
            {
                await writer.WriteLineAsync(statement);
            }
        }
        await writer.DisposeAsync(); // flushes and ends the gzip stream; the file stays open

        var (size, sha) = await file.CompleteAsync(ct);
        backup.SizeBytes = size;
        backup.Sha256 = sha;
        backup.EndLsn = session.EndLsn;
        backup.ChangeCount = priorChanges + session.ChangeCount;
        Record(backup, session.State);
        await progress(new BackupProgress("catalog", 95, size, $"{session.ChangeCount} new changes; recording the backup"));
        await catalog.CompleteAsync(backup, ct);

        // Only now, with the file durable and cataloged, may the slot forget these changes. Should this fail, the
        // next change backup starts from this backup's end anyway and skips what the slot sends again.
        try
        {
            await session.ConfirmAsync(options.Value.SlotConfirmTimeout, CancellationToken.None);
        }
        catch (NpgsqlException ex)
        {
            LogConfirmFailed(logger, target.Name, backup.Id, ex);
        }
    }

    private static async Task<DatabaseState> ReadStateInSnapshotAsync(BackupTarget target, string snapshotName, CancellationToken ct)
    {
        await using var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database));
        await sql.OpenAsync(ct);
        await using var tx = await sql.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, ct);
        await using (var import = new NpgsqlCommand($"SET TRANSACTION SNAPSHOT '{snapshotName}'", sql, tx))
        {
            await import.ExecuteNonQueryAsync(ct);
        }
        var state = await DatabaseInspector.ReadStateAsync(sql, tx, ct);
        await tx.CommitAsync(ct);
        return state;
    }

    private static void Record(BackupEntity backup, DatabaseState state)
    {
        backup.Status = BackupKinds.Completed;
        backup.CompletedAt = DateTime.UtcNow;
        backup.DurationMs = (long)(backup.CompletedAt.Value - backup.StartedAt).TotalMilliseconds;
        backup.ServerVersion = state.ServerVersion;
        backup.SchemaVersion = state.SchemaVersion;
        backup.SchemaFingerprint = state.SchemaFingerprint;
        backup.TableChecksums = BackupCatalog.TablesJson(state.Tables);
    }

    private static PreconditionFailedException SchemaChanged(BackupTarget target) =>
        new("SCHEMA_CHANGED",
            $"The schema of target '{target.Name}' changed since its last full backup; logical decoding does not carry DDL, so take a full backup.");

    private static async Task DropSlotQuietlyAsync(BackupTarget target, string slotName)
    {
        try
        {
            await using var sql = new NpgsqlConnection(target.ConnectionStringFor(target.Database));
            await sql.OpenAsync(CancellationToken.None);
            await using var drop = new NpgsqlCommand(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = @s AND NOT active", sql);
            drop.Parameters.AddWithValue("s", slotName);
            await drop.ExecuteNonQueryAsync(CancellationToken.None);
        }
        catch (NpgsqlException)
        {
            // The sweep after the next full backup drops it.
        }
    }

    /// <summary>Reports bytes written every half second while a tool runs.</summary>
    private static IDisposable ReportBytes(ProgressSink progress, string phase, int from, int to, long estimate, Func<long> bytes, CancellationToken ct)
    {
        var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        _ = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await Task.Delay(500, stop.Token);
                    var done = bytes();
                    var percent = from + (int)Math.Min(to - from - 1, (to - from) * (double)done / estimate);
                    await progress(new BackupProgress(phase, percent, done, $"{done:N0} bytes"));
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException)
            {
                // stopped, or the caller's stream is gone
            }
        }, CancellationToken.None);
        return new CancelOnDispose(stop);
    }

    private sealed class CancelOnDispose(CancellationTokenSource source) : IDisposable
    {
        public void Dispose()
        {
            source.Cancel();
            source.Dispose();
        }
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Information, Message = "Starting {Type} backup of {Target} ({BackupId})")]
    private static partial void LogStarted(ILogger logger, string type, string target, Guid backupId);

    [LoggerMessage(EventId = 5002, Level = LogLevel.Information, Message = "Completed {Type} backup of {Target} ({BackupId}): {Bytes} bytes in {DurationMs} ms")]
    private static partial void LogCompleted(ILogger logger, string type, string target, Guid backupId, long bytes, long durationMs);

    [LoggerMessage(EventId = 5003, Level = LogLevel.Warning, Message = "Backup {BackupId} of {Target} completed but its slot position was not confirmed")]
    private static partial void LogConfirmFailed(ILogger logger, string target, Guid backupId, Exception exception);

    [LoggerMessage(EventId = 5004, Level = LogLevel.Warning, Message = "{Type} backup of {Target} ({BackupId}) failed")]
    private static partial void LogFailed(ILogger logger, string type, string target, Guid backupId, Exception exception);
}
