using Lifeline.Backup.Data;
using Lifeline.Backup.Engine;
using Lifeline.Backup.Maintenance;
using Lifeline.Backup.Options;
using Lifeline.ServiceDefaults.Errors;
using Lifeline.ServiceDefaults.Hosting;
using Lifeline.ServiceDefaults.Leadership;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Backup.Scheduling;

/// <summary>
/// Runs due scheduled backups. With several instances only the one elected for the role <see cref="Role"/>
/// (<see cref="LeaderElection"/>) acts, and it claims due schedules (moves them to their next time) only while its term
/// runs; if it dies, another takes over when the term expires (at once when it resigned on stopping).
/// </summary>
public sealed partial class BackupScheduler(
    IDbContextFactory<BackupDbContext> contexts, BackupRunner runner, StaleRunSweeper sweeper,
    [FromKeyedServices(BackupScheduler.Role)] LeaderElection leader, TimeProvider clock, IOptions<BackupOptions> options, ILogger<BackupScheduler> logger)
    : LeaderLoop(leader, logger, LoopBackoff.Between(options.Value.SchedulerInterval, TimeSpan.FromSeconds(30)), clock)
{
    /// <summary>The scheduler's role in <c>lifeline_leaders</c> (and the DI key of its election).</summary>
    public const string Role = "backup-scheduler";

    /// <summary>How long a scheduler's term lasts without renewal.</summary>
    public static readonly TimeSpan TermTtl = TimeSpan.FromSeconds(15);

    protected override async Task<TimeSpan> RunTermPassAsync(LeaderTerm term, CancellationToken ct)
    {
        await sweeper.SweepAsync(ct);
        await RunDueAsync(term, ct);
        return options.Value.SchedulerInterval;
    }

    private async Task RunDueAsync(LeaderTerm term, CancellationToken ct)
    {
        var now = Time.GetUtcNow().UtcDateTime;
        List<ScheduleEntity> due;
        await using (var db = await contexts.CreateDbContextAsync(ct))
        {
            // Claimed under the term: no successor can be elected before this transaction ends, and a deposed scheduler claims nothing.
            await using var tx = await db.Database.BeginTransactionAsync(ct);
            if (!await term.HoldsAsync((NpgsqlConnection)db.Database.GetDbConnection(), (NpgsqlTransaction)tx.GetDbTransaction(), ct))
            {
                return;
            }
            due = await db.Schedules.Where(s => s.NextRunAt <= now).OrderBy(s => s.NextRunAt).ToListAsync(ct);
            foreach (var schedule in due)
            {
                // Advance first: a run that crashes the instance is not repeated in a loop.
                CronExpression.TryParse(schedule.Cron, out var cron, out _);
                schedule.NextRunAt = cron?.NextAfter(now) ?? DateTime.MaxValue;
                schedule.LastRunAt = now;
            }
            await db.SaveChangesAsync(ct);
            await tx.CommitAsync(ct);
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
