using Lifeline.Recovery.Data;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>Disaster-recovery plans (<c>dr_plans</c>, names unique) and reading runs (<c>dr_runs</c>).</summary>
public sealed class DrPlanStore(IDbContextFactory<RecoveryDbContext> contexts, TimeProvider time)
{
    public const int RecentRuns = 20;

    public async Task<DisasterRecoveryPlan> CreateAsync(CreateDisasterRecoveryPlanRequest request, CancellationToken ct)
    {
        var entity = new DrPlanEntity
        {
            Id = Guid.CreateVersion7(),
            Name = request.Name,
            Description = request.Description,
            Steps = DrRecords.ToJson(request.Steps),
            CreatedAt = time.Now(),
        };
        await using var db = await contexts.CreateDbContextAsync(ct);
        db.DrPlans.Add(entity);
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateException e) when (e.InnerException is PostgresException { SqlState: PostgresErrorCodes.UniqueViolation, ConstraintName: "ux_dr_plans_name" })
        {
            await using var read = await contexts.CreateDbContextAsync(ct);
            var existing = await read.DrPlans.AsNoTracking().Where(p => p.Name == request.Name).Select(p => p.Id).FirstOrDefaultAsync(ct);
            throw new DrPlanExistsException(request.Name, existing);
        }
        return entity.ToProto();
    }

    public async Task<(DisasterRecoveryPlan Plan, List<DisasterRecoveryRun> Runs)> GetAsync(Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var plan = await db.DrPlans.AsNoTracking().FirstOrDefaultAsync(p => p.Id == id, ct) ?? throw new NotFoundException("dr_plan", id.ToString());
        var runs = await db.DrRuns.AsNoTracking().Where(r => r.PlanId == id).OrderByDescending(r => r.StartedAt).ThenByDescending(r => r.Id)
            .Take(RecentRuns).ToListAsync(ct);
        return (plan.ToProto(), runs.Select(r => r.ToProto()).ToList());
    }

    public async Task<(List<DisasterRecoveryPlan> Plans, string NextPageToken)> ListAsync(int pageSize, KeysetPageToken? after, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var query = db.DrPlans.AsNoTracking();
        if (after is { } a)
        {
            query = query.Where(p => EF.Functions.LessThan(ValueTuple.Create(p.CreatedAt, p.Id), ValueTuple.Create(a.CreatedAt, a.Id)));
        }
        var page = await query.OrderByDescending(p => p.CreatedAt).ThenByDescending(p => p.Id).Take(pageSize + 1).ToListAsync(ct);
        var next = page.Count > pageSize ? new KeysetPageToken(page[pageSize - 1].CreatedAt, page[pageSize - 1].Id).ToString() : "";
        return (page.Take(pageSize).Select(p => p.ToProto()).ToList(), next);
    }

    public async Task<DisasterRecoveryRun> GetRunAsync(Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var run = await db.DrRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Id == id, ct) ?? throw new NotFoundException("dr_run", id.ToString());
        return run.ToProto();
    }
}
