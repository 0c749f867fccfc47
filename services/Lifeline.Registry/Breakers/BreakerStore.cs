using Lifeline.Registry.Data;
using Lifeline.Registry.Heartbeats;
using Lifeline.Registry.Options;
using Lifeline.ServiceDefaults.Errors;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lifeline.Registry.Breakers;

/// <summary>
/// Circuit breakers in PostgreSQL, changed with optimistic concurrency on <c>xmin</c>: a change computed
/// from a state someone else changed meanwhile is recomputed from the new state, never written over it.
/// Every committed change is mirrored to Redis for the queue's lease path.
/// </summary>
public sealed class BreakerStore(IDbContextFactory<RegistryDbContext> contexts, IServiceProvider services, IOptions<RegistryOptions> options)
{
    private RedisMirror Mirror => services.GetRequiredService<RedisMirror>();

    public async Task<BreakerState> GetStateAsync(Guid workerId, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var entity = await db.CircuitBreakers.AsNoTracking().FirstOrDefaultAsync(b => b.WorkerId == workerId, ct);
        return entity is null ? BreakerState.Initial : ToState(entity);
    }

    public async Task<CircuitBreakerEntity> GetAsync(string tenant, Guid workerId, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var entity = await db.CircuitBreakers.AsNoTracking().FirstOrDefaultAsync(b => b.WorkerId == workerId && b.TenantId == tenant, ct);
        if (entity is not null)
        {
            return entity;
        }
        // Retention removes closed breakers; a registered worker without a row has a closed one.
        if (!await db.Workers.AnyAsync(w => w.Id == workerId && w.TenantId == tenant, ct))
        {
            throw new NotFoundException("worker", workerId.ToString());
        }
        return new CircuitBreakerEntity
        {
            WorkerId = workerId, TenantId = tenant, State = BreakerState.Closed, FailureThreshold = options.Value.BreakerFailureThreshold,
            UpdatedAt = DateTime.UtcNow,
        };
    }

    /// <summary>Applies a change to a breaker with optimistic concurrency, retrying on a concurrent write; mirrors the result.</summary>
    public async Task<CircuitBreakerEntity> ChangeAsync(string tenant, Guid workerId, Func<BreakerState, DateTime, BreakerState> change, CancellationToken ct)
    {
        for (var attempt = 1; ; attempt++)
        {
            await using var db = await contexts.CreateDbContextAsync(ct);
            var entity = await db.CircuitBreakers.FirstOrDefaultAsync(b => b.WorkerId == workerId && b.TenantId == tenant, ct);
            var now = DateTime.UtcNow;
            if (entity is null)
            {
                entity = new CircuitBreakerEntity
                {
                    WorkerId = workerId, TenantId = tenant, State = BreakerState.Closed, FailureThreshold = options.Value.BreakerFailureThreshold,
                    UpdatedAt = now,
                };
                db.CircuitBreakers.Add(entity);
            }
            var before = ToState(entity);
            var after = change(before, now);
            if (after != before || db.Entry(entity).State == EntityState.Added)
            {
                entity.State = after.State;
                entity.ConsecutiveFailures = after.ConsecutiveFailures;
                entity.ResetAt = after.ResetAt;
                entity.OpenedAt = after.OpenedAt;
                entity.FailureThreshold = options.Value.BreakerFailureThreshold;
                entity.UpdatedAt = now;
                try
                {
                    await db.SaveChangesAsync(ct);
                }
                catch (Exception ex) when (ex is DbUpdateConcurrencyException or DbUpdateException && attempt < 10)
                {
                    continue; // someone changed (or created) it meanwhile: recompute from their state
                }
                await Mirror.SetBreakerAsync(tenant, workerId, after);
            }
            return entity;
        }
    }

    /// <summary>
    /// Turns open breakers whose reset time passed into half-open ones (also at start: "expired Opens become
    /// HalfOpen on restore") and mirrors every breaker of the given workers. Returns how many changed.
    /// </summary>
    public async Task<int> HalfOpenExpiredAsync(CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var now = DateTime.UtcNow;
        var expired = await db.CircuitBreakers.AsNoTracking()
            .Where(b => b.State == BreakerState.Open && b.ResetAt <= now)
            .OrderBy(b => b.ResetAt)
            .Select(b => new { b.TenantId, b.WorkerId })
            .Take(1000)
            .ToListAsync(ct);
        foreach (var breaker in expired)
        {
            await ChangeAsync(breaker.TenantId, breaker.WorkerId, (state, at) => CircuitBreakerPolicy.Effective(state, at), ct);
        }
        return expired.Count;
    }

    public async Task<(IReadOnlyList<CircuitBreakerEntity> Breakers, Guid? Next)> ListAsync(string tenant, string? state, int pageSize, Guid? after, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var query = db.CircuitBreakers.AsNoTracking().Where(b => b.TenantId == tenant);
        if (state is not null)
        {
            query = query.Where(b => b.State == state);
        }
        if (after is { } a)
        {
            query = query.Where(b => b.WorkerId.CompareTo(a) > 0);
        }
        var page = await query.OrderBy(b => b.WorkerId).Take(pageSize + 1).ToListAsync(ct);
        if (page.Count <= pageSize)
        {
            return (page, null);
        }
        page.RemoveAt(page.Count - 1);
        return (page, page[^1].WorkerId);
    }

    public static BreakerState ToState(CircuitBreakerEntity e) => new(e.State, e.ConsecutiveFailures, e.ResetAt, e.OpenedAt);
}
