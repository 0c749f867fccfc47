using Lifeline.Recovery.Data;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace Lifeline.Recovery.DisasterRecovery;

/// <summary>Disaster-recovery plans (<c>dr_plans</c>, names unique) and reading runs (<c>dr_runs</c>).</summary>
public sealed class DrPlanStore(IDbContextFactory<RecoveryDbContext> contexts, NpgsqlDataSource dataSource, TimeProvider time)
{
    public const int RecentRuns = 20;

    /// <summary>
    /// Creates a plan; a name in use is ALREADY_EXISTS (<see cref="DrPlanExistsException"/>). The insert does nothing on a
    /// name conflict instead of failing, so a duplicate is an answer, not a failed statement that EF Core and Npgsql
    /// would log as an error with its stack trace.
    /// </summary>
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
        await using var command = dataSource.CreateCommand("""
            WITH inserted AS (
                INSERT INTO dr_plans (id, name, description, steps, created_at)
                VALUES (@id, @name, @description, @steps::jsonb, @created_at)
                ON CONFLICT (name) DO NOTHING
                RETURNING id
            )
            SELECT id, true FROM inserted
            UNION ALL
            SELECT id, false FROM dr_plans WHERE name = @name AND NOT EXISTS (SELECT 1 FROM inserted)
            """);
        command.Parameters.AddWithValue("id", entity.Id);
        command.Parameters.AddWithValue("name", entity.Name);
        command.Parameters.AddWithValue("description", entity.Description);
        command.Parameters.AddWithValue("steps", entity.Steps);
        command.Parameters.AddWithValue("created_at", entity.CreatedAt);
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            if (await reader.ReadAsync(ct))
            {
                var (id, created) = (reader.GetGuid(0), reader.GetBoolean(1));
                return created ? entity.ToProto() : throw new DrPlanExistsException(request.Name, id);
            }
        }
        // The conflicting plan committed while this insert waited for it, after the statement's snapshot: look again.
        await using var existing = dataSource.CreateCommand("SELECT id FROM dr_plans WHERE name = @name");
        existing.Parameters.AddWithValue("name", entity.Name);
        throw new DrPlanExistsException(request.Name, await existing.ExecuteScalarAsync(ct) as Guid? ?? Guid.Empty);
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
        var next = page.Count > pageSize ? new KeysetPageToken(page[pageSize - 1].CreatedAt, page[pageSize - 1].Id).Encode(KeysetPageToken.DisasterRecoveryPlans) : "";
        return (page.Take(pageSize).Select(p => p.ToProto()).ToList(), next);
    }

    public async Task<DisasterRecoveryRun> GetRunAsync(Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var run = await db.DrRuns.AsNoTracking().FirstOrDefaultAsync(r => r.Id == id, ct) ?? throw new NotFoundException("dr_run", id.ToString());
        return run.ToProto();
    }
}
