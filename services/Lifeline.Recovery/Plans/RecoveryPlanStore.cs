using Lifeline.Recovery.Data;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;

namespace Lifeline.Recovery.Plans;

/// <summary>
/// Creates, reads, lists and approves recovery plans (<c>recovery_plans</c>); execution is <see cref="RecoveryPlanExecutor"/>'s.
/// A plan belongs to the tenant it was created for: every read and write names that tenant, and another tenant's
/// plan is NOT_FOUND, exactly as one that does not exist.
/// </summary>
public sealed class RecoveryPlanStore(IDbContextFactory<RecoveryDbContext> contexts, TimeProvider time)
{
    public async Task<RecoveryPlan> CreateAsync(NewPlan plan, CancellationToken ct)
    {
        var now = time.Now();
        var id = Guid.CreateVersion7();
        var status = plan.Plan.RequiresApproval ? PlanStatus.AwaitingApproval : PlanStatus.Ready;
        var entity = new RecoveryPlanEntity
        {
            Id = id,
            TenantId = plan.Error.TenantId,
            ErrorCode = plan.Error.Code,
            Category = (int)plan.Error.Category,
            Severity = (int)plan.Error.Severity,
            ErrorMessage = plan.Error.Message,
            TaskId = plan.TaskId,
            WorkflowId = plan.Error.WorkflowId,
            Status = (int)status,
            RequiresApproval = plan.Plan.RequiresApproval,
            Source = plan.Plan.Source,
            Actions = PlanRecords.ActionsJson(plan.Plan.Actions),
            NextSteps = [.. PlanOutcome.NextSteps(id, status, plan.Plan.Actions, plan.Error)],
            CreatedAt = now,
            UpdatedAt = now,
        };
        await using var db = await contexts.CreateDbContextAsync(ct);
        db.RecoveryPlans.Add(entity);
        await db.SaveChangesAsync(ct);
        return entity.ToProto();
    }

    public async Task<RecoveryPlan> GetAsync(string tenant, Guid id, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        return (await FindAsync(db, tenant, id, ct)).ToProto();
    }

    /// <summary>The tenant's plans, newest first (index <c>ix_recovery_plans_tenant</c>, or <c>ix_recovery_plans_tenant_status</c> by status).</summary>
    public async Task<(List<RecoveryPlan> Plans, string NextPageToken)> ListAsync(string tenant, PlanStatus status, int pageSize, KeysetPageToken? after,
        CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var query = db.RecoveryPlans.AsNoTracking().Where(p => p.TenantId == tenant);
        if (status != PlanStatus.Unspecified)
        {
            query = query.Where(p => p.Status == (int)status);
        }
        if (after is { } a)
        {
            query = query.Where(p => EF.Functions.LessThan(ValueTuple.Create(p.CreatedAt, p.Id), ValueTuple.Create(a.CreatedAt, a.Id)));
        }
        var page = await query.OrderByDescending(p => p.CreatedAt).ThenByDescending(p => p.Id).Take(pageSize + 1).ToListAsync(ct);
        var next = page.Count > pageSize ? new KeysetPageToken(page[pageSize - 1].CreatedAt, page[pageSize - 1].Id).Encode(KeysetPageToken.RecoveryPlans) : "";
        return (page.Take(pageSize).Select(p => p.ToProto()).ToList(), next);
    }

    /// <summary>Approves the tenant's plan awaiting approval (READY afterwards). Approving an approved plan again changes nothing.</summary>
    public async Task<RecoveryPlan> ApproveAsync(string tenant, Guid id, string approvedBy, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var plan = await FindAsync(db, tenant, id, ct);
        if (plan.ApprovedBy is not null)
        {
            return plan.ToProto();
        }
        if (!plan.RequiresApproval)
        {
            throw new InvalidPlanStateException(id, ((PlanStatus)plan.Status).ToString(), $"Recovery plan {id} does not require approval; execute it directly.");
        }
        var now = time.Now();
        plan.ApprovedBy = approvedBy;
        plan.ApprovedAt = now;
        plan.UpdatedAt = now;
        if (plan.Status == (int)PlanStatus.AwaitingApproval)
        {
            plan.Status = (int)PlanStatus.Ready;
            plan.NextSteps = [.. PlanOutcome.NextSteps(id, PlanStatus.Ready, PlanRecords.ParseActions(plan.Actions), plan.Error())];
        }
        try
        {
            await db.SaveChangesAsync(ct);
        }
        catch (DbUpdateConcurrencyException)
        {
            throw new ConcurrencyConflictException($"Recovery plan {id} changed while it was being approved; read it and try again.", TimeSpan.FromSeconds(1));
        }
        return plan.ToProto();
    }

    /// <summary>The tenant's plan, tracked for a guarded write; another tenant's plan is NOT_FOUND, as a missing one.</summary>
    internal static async Task<RecoveryPlanEntity> FindAsync(RecoveryDbContext db, string tenant, Guid id, CancellationToken ct) =>
        await db.RecoveryPlans.FirstOrDefaultAsync(p => p.Id == id && p.TenantId == tenant, ct) ?? throw new NotFoundException("recovery_plan", id.ToString());
}
