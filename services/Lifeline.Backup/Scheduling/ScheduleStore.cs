using Lifeline.Backup.Data;
using Lifeline.Backup.Targets;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Backup.Scheduling;

/// <summary>The backup schedules (one cron expression per target and type).</summary>
public sealed class ScheduleStore(IDbContextFactory<BackupDbContext> contexts, TargetDirectory targets, TimeProvider clock)
{
    /// <summary>Creates or replaces a schedule; the expression must already be validated.</summary>
    public async Task<ScheduleEntity> SetAsync(string target, string type, CronExpression cron, string cronText, CancellationToken ct)
    {
        targets.Get(target);
        var now = clock.GetUtcNow().UtcDateTime;
        var next = cron.NextAfter(now) ?? throw ValidationException.For("cron", "never matches a date");
        await using var db = await contexts.CreateDbContextAsync(ct);
        var schedule = await db.Schedules.SingleOrDefaultAsync(s => s.Target == target && s.Type == type, ct);
        if (schedule is null)
        {
            schedule = new ScheduleEntity { Target = target, Type = type };
            db.Schedules.Add(schedule);
        }
        schedule.Cron = cronText;
        schedule.NextRunAt = next;
        schedule.UpdatedAt = now;
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException ex) when (ex.InnerException is Npgsql.PostgresException { SqlState: Npgsql.PostgresErrorCodes.UniqueViolation })
        {
            throw new ConcurrencyConflictException("The schedule was set concurrently; retry.", TimeSpan.FromMilliseconds(100));
        }
        return schedule;
    }

    public async Task<IReadOnlyList<ScheduleEntity>> ListAsync(string? target, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var query = db.Schedules.AsNoTracking();
        if (target is not null)
        {
            query = query.Where(s => s.Target == target);
        }
        return await query.OrderBy(s => s.Target).ThenBy(s => s.Type).ToListAsync(ct);
    }

    public async Task<bool> DeleteAsync(string target, string type, CancellationToken ct)
    {
        targets.Get(target);
        await using var db = await contexts.CreateDbContextAsync(ct);
        return await db.Schedules.Where(s => s.Target == target && s.Type == type).ExecuteDeleteAsync(ct) > 0;
    }
}
