using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Maintenance;
using Lifeline.Backup.Options;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Backup.Scheduling;

/// <summary>
/// Runs due scheduled backups. With several instances only the one holding the scheduler's advisory lock
/// (on a connection it keeps) acts; if it dies, its lock goes with its connection and another takes over.
/// </summary>
public sealed partial class BackupScheduler(
    NpgsqlDataSource catalogDb, IDbContextFactory<BackupDbContext> contexts, BackupRunner runner, StaleRunSweeper sweeper,
    TimeProvider clock, IOptions<BackupOptions> options, ILogger<BackupScheduler> logger)
    : BackgroundLoop(logger, LoopBackoff.Between(options.Value.SchedulerInterval, TimeSpan.FromSeconds(30)), clock)
{
    private const int LockClass = 0x4c42;
    private const int SchedulerLockKey = 0x5343; // "SC"; target locks use hashes, a clash only delays one tick

    private NpgsqlConnection? _leadership; // holds the scheduler's lock while this instance leads

    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        try
        {
            _leadership ??= await TryLeadAsync(stoppingToken);
            if (_leadership is not null)
            {
                await using (var ping = new NpgsqlCommand("SELECT 1", _leadership))
                {
                    await ping.ExecuteScalarAsync(stoppingToken);
                }
                await sweeper.SweepAsync(stoppingToken);
                await RunDueAsync(stoppingToken);
            }
        }
        catch
        {
            await StepDownAsync(); // the lock goes with its connection; it is tried for again on the next tick
            throw;
        }
        return options.Value.SchedulerInterval;
    }

    protected override Task RunLastPassAsync(CancellationToken cancellationToken) => StepDownAsync();

    private async Task StepDownAsync()
    {
        if (_leadership is { } connection)
        {
            _leadership = null;
            await connection.DisposeAsync();
        }
    }

    private async Task<NpgsqlConnection?> TryLeadAsync(CancellationToken ct)
    {
        var connection = await catalogDb.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand("SELECT pg_try_advisory_lock(@c, @k)", connection);
        command.Parameters.AddWithValue("c", LockClass + 1);
        command.Parameters.AddWithValue("k", SchedulerLockKey);
        if ((bool)(await command.ExecuteScalarAsync(ct))!)
        {
            return connection;
        }
        await connection.DisposeAsync();
        return null;
    }

    private async Task RunDueAsync(CancellationToken ct)
    {
        var now = Time.GetUtcNow().UtcDateTime;
        List<ScheduleEntity> due;
        await using (var db = await contexts.CreateDbContextAsync(ct))
        {
            due = await db.Schedules.Where(s => s.NextRunAt <= now).OrderBy(s => s.NextRunAt).ToListAsync(ct);
            foreach (var schedule in due)
            {
                // Advance first: a run that crashes the instance is not repeated in a loop.
                CronExpression.TryParse(schedule.Cron, out var cron, out _);
                schedule.NextRunAt = cron?.NextAfter(now) ?? DateTime.MaxValue;
                schedule.LastRunAt = now;
            }
            await db.SaveChangesAsync(ct);
        }

        foreach (var schedule in due)
        {
            Guid? backupId = null;
            string? error = null;
            try
            {
                var backup = await runner.CreateAsync(schedule.Target, schedule.Type, _ => Task.CompletedTask, ct);
                backupId = backup.Id;
                LogScheduledBackup(logger, schedule.Type, schedule.Target, backup.Id);
            }
            catch (LifelineException ex)
            {
                error = $"{ex.Reason}: {ex.Message}";
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                // Whatever failed this backup is recorded on its schedule (already advanced): the next one still runs.
                error = ex.Message;
            }
            if (error is not null)
            {
                LogScheduledBackupFailed(logger, schedule.Type, schedule.Target, error);
            }
            await using var db = await contexts.CreateDbContextAsync(ct);
            await db.Schedules.Where(s => s.Target == schedule.Target && s.Type == schedule.Type).ExecuteUpdateAsync(s => s
                .SetProperty(x => x.LastBackupId, backupId)
                .SetProperty(x => x.LastError, error), ct);
        }
    }

    [LoggerMessage(EventId = 5012, Level = LogLevel.Information, Message = "Scheduled {Type} backup of {Target}: {BackupId}")]
    private static partial void LogScheduledBackup(ILogger logger, string type, string target, Guid backupId);

    [LoggerMessage(EventId = 5013, Level = LogLevel.Warning, Message = "Scheduled {Type} backup of {Target} failed: {Error}")]
    private static partial void LogScheduledBackupFailed(ILogger logger, string type, string target, string error);
}
