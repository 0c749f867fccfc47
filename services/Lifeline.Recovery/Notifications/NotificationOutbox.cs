using Lifeline.Recovery.Data;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Options;

namespace Lifeline.Recovery.Notifications;

/// <summary>A notification names a webhook that is not configured (<c>Recovery:Webhooks</c>).</summary>
public sealed class UnknownWebhookException(IReadOnlyList<string> unknown, IReadOnlyList<string> configured)
    : Exception($"unknown webhook{(unknown.Count == 1 ? "" : "s")} {string.Join(", ", unknown.Select(n => $"'{n}'"))}; configured: " +
                (configured.Count == 0 ? "none" : string.Join(", ", configured)))
{
    public IReadOnlyList<string> Unknown { get; } = unknown;
}

/// <summary>
/// The webhook outbox (<c>notifications</c>): a notification is a row per webhook, written in the same
/// transaction as whatever caused it when the caller passes its context, and delivered later by
/// <see cref="WebhookDispatcher"/> — so a notification survives restarts and is never lost between
/// deciding to notify and sending.
/// </summary>
public sealed class NotificationOutbox(IDbContextFactory<RecoveryDbContext> contexts, IOptionsMonitor<RecoveryOptions> options, TimeProvider time)
{
    private readonly SemaphoreSlim _wake = new(0);

    /// <summary>Names of the configured webhooks.</summary>
    public IReadOnlyList<string> Configured => options.CurrentValue.Webhooks.Select(w => w.Name).ToList();

    /// <summary>
    /// Adds one pending notification per webhook (<paramref name="webhooks"/> empty: every configured one) to
    /// <paramref name="db"/> without saving: the caller's SaveChanges commits them with its own changes.
    /// Unknown names: <see cref="UnknownWebhookException"/>, nothing added. No webhook configured and none named: nothing added.
    /// </summary>
    public IReadOnlyList<NotificationEntity> Add(RecoveryDbContext db, IReadOnlyCollection<string> webhooks, string eventName, string payloadJson)
    {
        var configured = Configured;
        var unknown = webhooks.Where(w => !configured.Contains(w, StringComparer.Ordinal)).Distinct(StringComparer.Ordinal).ToList();
        if (unknown.Count > 0)
        {
            throw new UnknownWebhookException(unknown, configured);
        }
        var now = time.Now();
        var rows = (webhooks.Count == 0 ? configured : webhooks.Distinct(StringComparer.Ordinal))
            .Select(name => new NotificationEntity
            {
                Id = Guid.CreateVersion7(),
                Webhook = name,
                Event = eventName,
                Payload = payloadJson,
                Status = (int)NotificationStatus.Pending,
                Attempts = 0,
                CreatedAt = now,
                NextAttemptAt = now,
            })
            .ToList();
        db.Notifications.AddRange(rows);
        return rows;
    }

    /// <summary>Writes notifications on their own (see <see cref="Add"/>) and wakes the local dispatcher.</summary>
    public async Task<IReadOnlyList<NotificationEntity>> EnqueueAsync(
        IReadOnlyCollection<string> webhooks, string eventName, string payloadJson, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var rows = Add(db, webhooks, eventName, payloadJson);
        await db.SaveChangesAsync(ct);
        Wake();
        return rows;
    }

    /// <summary>Tells this instance's dispatcher that new rows are due (other instances find them by polling).</summary>
    public void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            _wake.Release();
        }
    }

    /// <summary>Waits for <see cref="Wake"/> or the poll interval, whichever comes first.</summary>
    internal async Task WaitAsync(TimeSpan pollInterval, CancellationToken ct) => await _wake.WaitAsync(pollInterval, ct);

    /// <summary>Notifications newest first, optionally of one status, keyset-paged.</summary>
    public async Task<(List<NotificationEntity> Page, string NextPageToken)> ListAsync(
        NotificationStatus status, int pageSize, KeysetPageToken? after, CancellationToken ct)
    {
        await using var db = await contexts.CreateDbContextAsync(ct);
        var query = db.Notifications.AsNoTracking();
        if (status != NotificationStatus.Unspecified)
        {
            query = query.Where(n => n.Status == (int)status);
        }
        if (after is { } a)
        {
            query = query.Where(n => EF.Functions.LessThan(ValueTuple.Create(n.CreatedAt, n.Id), ValueTuple.Create(a.CreatedAt, a.Id)));
        }
        var page = await query.OrderByDescending(n => n.CreatedAt).ThenByDescending(n => n.Id).Take(pageSize + 1).ToListAsync(ct);
        var next = page.Count > pageSize ? new KeysetPageToken(page[pageSize - 1].CreatedAt, page[pageSize - 1].Id).Encode(KeysetPageToken.Notifications) : "";
        return (page.Take(pageSize).ToList(), next);
    }
}
