using System.Diagnostics;
using System.Globalization;
using System.Text;
using Lifeline.Recovery.Options;
using Lifeline.Recovery.V1;
using Lifeline.ServiceDefaults.Hosting;
using Microsoft.Extensions.Options;
using Npgsql;

namespace Lifeline.Recovery.Notifications;

/// <summary>
/// Delivers the outbox. Every instance runs one (no leader needed): it claims due rows of the webhooks
/// <i>it</i> has configured with <c>UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED)</c>, which
/// moves their <c>next_attempt_at</c> past the attempt's time limit — so two instances never send one
/// notification at the same time, and a claim of an instance that dies is picked up again once it lapses (one that
/// stops gives its in-flight claims back).
/// A 2xx answer marks the row delivered; anything else (status, timeout, connection error) counts an
/// attempt and schedules the next after initial × 2^(attempts−1), capped at <c>WebhookMaxBackoff</c>, up to
/// 20 % shorter (jitter); after <c>WebhookMaxAttempts</c> the row is failed. Delivery is at least once:
/// an instance that dies after the receiver answered and before recording it sends again, with the same
/// <c>X-Lifeline-Delivery</c> id, so receivers can deduplicate.
/// </summary>
public sealed partial class WebhookDispatcher(
    NpgsqlDataSource dataSource, NotificationOutbox outbox, IHttpClientFactory httpClients, IOptionsMonitor<RecoveryOptions> options,
    TimeProvider time, ILogger<WebhookDispatcher> logger)
    : BackgroundLoop(logger, LoopBackoff.Between(options.CurrentValue.WebhookPollInterval, TimeSpan.FromSeconds(30)), time)
{
    public const string HttpClientName = "lifeline-webhooks";

    /// <summary>Time limit of one delivery attempt (the HTTP client's timeout).</summary>
    public static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);

    private const int BatchSize = 20;

    // The claim outlives the attempt, so a slow attempt is never claimed a second time while it runs.
    private static readonly TimeSpan ClaimDuration = AttemptTimeout * 3;

    private sealed record Claimed(Guid Id, string Webhook, string Event, string Payload, int Attempts, DateTime ClaimedUntil);

    /// <summary>Delivers a batch; when that was not a full one, waits for a new notification or the poll interval.</summary>
    protected override async Task<TimeSpan> RunPassAsync(CancellationToken stoppingToken)
    {
        if (await DeliverDueAsync(stoppingToken) < BatchSize)
        {
            await outbox.WaitAsync(options.CurrentValue.WebhookPollInterval, stoppingToken);
        }
        return TimeSpan.Zero;
    }

    /// <summary>Claims and sends one batch of due notifications; returns how many were claimed.</summary>
    internal async Task<int> DeliverDueAsync(CancellationToken ct)
    {
        var hooks = options.CurrentValue.Webhooks.ToDictionary(w => w.Name, StringComparer.Ordinal);
        if (hooks.Count == 0)
        {
            return 0;
        }
        var claimed = await ClaimAsync([.. hooks.Keys], ct);
        await Task.WhenAll(claimed.Select(n => DeliverAsync(n, hooks[n.Webhook], ct)));
        return claimed.Count;
    }

    private async Task<List<Claimed>> ClaimAsync(string[] webhooks, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand("""
            UPDATE notifications SET next_attempt_at = clock_timestamp() + @claim
            WHERE id IN (
                SELECT id FROM notifications
                WHERE status = 1 AND next_attempt_at <= clock_timestamp() AND webhook = ANY(@webhooks)
                ORDER BY next_attempt_at
                LIMIT @limit
                FOR UPDATE SKIP LOCKED)
            RETURNING id, webhook, event, payload, attempts, next_attempt_at
            """);
        command.Parameters.AddWithValue("claim", ClaimDuration);
        command.Parameters.AddWithValue("webhooks", webhooks);
        command.Parameters.AddWithValue("limit", BatchSize);
        var claimed = new List<Claimed>();
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            claimed.Add(new Claimed(reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetInt32(4),
                reader.GetDateTime(5)));
        }
        return claimed;
    }

    private async Task DeliverAsync(Claimed n, WebhookOptions hook, CancellationToken ct)
    {
        string? error;
        var started = Stopwatch.GetTimestamp();
        try
        {
            var timestamp = Time.GetUtcNow().ToUnixTimeSeconds();
            using var request = new HttpRequestMessage(HttpMethod.Post, hook.Url)
            {
                Content = new StringContent(n.Payload, Encoding.UTF8, "application/json"),
            };
            request.Headers.Add("X-Lifeline-Event", n.Event);
            request.Headers.Add("X-Lifeline-Delivery", n.Id.ToString());
            request.Headers.Add("X-Lifeline-Timestamp", timestamp.ToString(CultureInfo.InvariantCulture));
            request.Headers.Add("X-Lifeline-Signature", WebhookSignature.Sign(hook.Secret, timestamp, n.Payload));
            using var response = await httpClients.CreateClient(HttpClientName).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
            error = response.IsSuccessStatusCode ? null : $"HTTP {(int)response.StatusCode} {response.ReasonPhrase}";
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Shutting down: no attempt is counted, and the claim is given back, so another instance (or this one once it
            // is back) tries again at once rather than when the claim would have lapsed.
            await ReleaseClaimAsync(n);
            return;
        }
        catch (Exception e)
        {
            // Whatever failed the attempt counts as one (and says why), so a notification that cannot be sent ends failed
            // after its attempts rather than being claimed again and again.
            error = e is TaskCanceledException ? $"no answer within {AttemptTimeout.TotalSeconds:0} s" : e.Message;
        }
        var attempts = n.Attempts + 1;
        if (error is null)
        {
            await RecordAsync(n, "status = 2, attempts = @attempts, delivered_at = clock_timestamp(), last_error = NULL", attempts, null, null, CancellationToken.None);
            LogDelivered(logger, n.Id, n.Webhook, n.Event, attempts, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            return;
        }
        var o = options.CurrentValue;
        if (attempts >= o.WebhookMaxAttempts)
        {
            await RecordAsync(n, "status = 3, attempts = @attempts, last_error = @error", attempts, error, null, CancellationToken.None);
            LogGaveUp(logger, n.Id, n.Webhook, attempts, error);
            return;
        }
        var backoff = Backoff(attempts, o.WebhookInitialBackoff, o.WebhookMaxBackoff, Random.Shared.NextDouble());
        await RecordAsync(n, "attempts = @attempts, last_error = @error, next_attempt_at = clock_timestamp() + @backoff", attempts, error, backoff,
            CancellationToken.None);
        LogAttemptFailed(logger, n.Id, n.Webhook, attempts, error, backoff.TotalMilliseconds);
    }

    /// <summary>Delay after the <paramref name="attempts"/>-th failed attempt: initial × 2^(attempts−1), capped, minus up to 20 % (<paramref name="random"/> in [0, 1)).</summary>
    public static TimeSpan Backoff(int attempts, TimeSpan initial, TimeSpan max, double random)
    {
        var exponential = initial.TotalMilliseconds * Math.Pow(2, Math.Min(attempts - 1, 30));
        var capped = Math.Min(exponential, max.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (1 - 0.2 * random));
    }

    // The outcome is recorded only while the claim is still ours (next_attempt_at unchanged): a claim that
    // lapsed and was taken by another instance is that instance's to record.
    private async Task RecordAsync(Claimed n, string set, int attempts, string? error, TimeSpan? backoff, CancellationToken ct)
    {
        await using var command = dataSource.CreateCommand(
            $"UPDATE notifications SET {set} WHERE id = @id AND status = 1 AND next_attempt_at = @claimed_until");
        command.Parameters.AddWithValue("id", n.Id);
        command.Parameters.AddWithValue("claimed_until", n.ClaimedUntil);
        command.Parameters.AddWithValue("attempts", attempts);
        command.Parameters.AddWithValue("error", (object?)Truncate(error) ?? DBNull.Value);
        command.Parameters.AddWithValue("backoff", backoff ?? TimeSpan.Zero);
        await command.ExecuteNonQueryAsync(ct);
    }

    private async Task ReleaseClaimAsync(Claimed n)
    {
        await using var command = dataSource.CreateCommand(
            "UPDATE notifications SET next_attempt_at = clock_timestamp() WHERE id = @id AND status = 1 AND next_attempt_at = @claimed_until");
        command.Parameters.AddWithValue("id", n.Id);
        command.Parameters.AddWithValue("claimed_until", n.ClaimedUntil);
        await command.ExecuteNonQueryAsync(CancellationToken.None); // the stopping token is cancelled already
    }

    private static string? Truncate(string? value) => value is null || value.Length <= 1024 ? value : value[..1024];

    [LoggerMessage(EventId = 4101, Level = LogLevel.Information, Message = "Notification {NotificationId} ({Event}) delivered to webhook {Webhook} at attempt {Attempts} in {Milliseconds:0} ms")]
    private static partial void LogDelivered(ILogger logger, Guid notificationId, string webhook, string @event, int attempts, double milliseconds);

    [LoggerMessage(EventId = 4102, Level = LogLevel.Warning, Message = "Notification {NotificationId} to webhook {Webhook}: attempt {Attempts} failed ({Error}); next in {BackoffMs:0} ms")]
    private static partial void LogAttemptFailed(ILogger logger, Guid notificationId, string webhook, int attempts, string error, double backoffMs);

    [LoggerMessage(EventId = 4103, Level = LogLevel.Error, Message = "Notification {NotificationId} to webhook {Webhook} failed after {Attempts} attempts: {Error}")]
    private static partial void LogGaveUp(ILogger logger, Guid notificationId, string webhook, int attempts, string error);
}
