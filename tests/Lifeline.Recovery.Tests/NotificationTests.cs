using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Grpc.Core;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;
using Microsoft.Extensions.DependencyInjection;
using static Lifeline.Recovery.Tests.RecoveryPlanTestSupport;

namespace Lifeline.Recovery.Tests;

/// <summary>
/// The webhook outbox: signed deliveries, retries with backoff until a 2xx, exactly one successful delivery,
/// giving up after the configured attempts, and nothing lost when the instance holding it stops.
/// </summary>
public sealed class NotificationTests(RecoveryEnvironment env) : IClassFixture<RecoveryEnvironment>
{
    private const string Secret = "s3cret-for-tests";

    private static string NewHook() => $"hook-{Guid.NewGuid():N}"[..17];

    private Task<ServiceHost> StartWithWebhookAsync(string name, string url, int maxAttempts = 10) => env.StartRecoveryAsync(new Dictionary<string, string?>
    {
        ["Recovery:Webhooks:0:Name"] = name,
        ["Recovery:Webhooks:0:Url"] = url,
        ["Recovery:Webhooks:0:Secret"] = Secret,
        ["Recovery:WebhookMaxAttempts"] = maxAttempts.ToString(System.Globalization.CultureInfo.InvariantCulture),
    });

    private static Task<IReadOnlyList<NotificationEntityView>> RowsAsync(RecoveryEnvironment env, string webhook) => NotificationEntityView.ReadAsync(env, webhook);

    /// <summary>Recomputes the signature independently of the service's code.</summary>
    private static string Expected(string timestamp, string body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), Encoding.UTF8.GetBytes($"{timestamp}.{body}")));

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task An_escalation_is_delivered_as_a_signed_webhook()
    {
        await using var receiver = await NotificationReceiver.StartAsync();
        var hook = NewHook();
        var host = await StartWithWebhookAsync(hook, receiver.Url("escalations"));
        try
        {
            var plans = env.PlanClient(host);
            // The task does not exist: the retry fails and the plan escalates.
            var plan = await plans.CreatePlanAsync(Error(ErrorCategory.Transient, code: "HTTP_503", taskId: Guid.NewGuid().ToString()));
            var waiting = await plans.ExecuteAsync(plan);
            Assert.Equal(PlanStatus.Waiting, waiting.Status);
            Assert.Contains($"escalated to webhook(s) {hook}", waiting.Actions[1].Result);

            var request = Assert.Single(await receiver.WaitForAsync(r => r.Count >= 1));
            Assert.Equal("/escalations", request.Path);
            Assert.Equal("recovery.plan.escalated", request.Header("X-Lifeline-Event"));
            Assert.StartsWith("application/json", request.Header("Content-Type"), StringComparison.Ordinal);
            var timestamp = request.Header("X-Lifeline-Timestamp");
            Assert.InRange(long.Parse(timestamp, System.Globalization.CultureInfo.InvariantCulture),
                DateTimeOffset.UtcNow.AddMinutes(-1).ToUnixTimeSeconds(), DateTimeOffset.UtcNow.ToUnixTimeSeconds());
            Assert.Equal(Expected(timestamp, request.Body), request.Header("X-Lifeline-Signature"));
            Assert.NotEqual(Expected(timestamp, request.Body + " "), request.Header("X-Lifeline-Signature"));
            using var payload = JsonDocument.Parse(request.Body);
            Assert.Equal(plan.Id, payload.RootElement.GetProperty("plan_id").GetString());
            Assert.Equal(1, payload.RootElement.GetProperty("action_index").GetInt32());
            Assert.Equal("HTTP_503", payload.RootElement.GetProperty("error").GetProperty("code").GetString());

            var listed = await EventuallyAsync(
                () => env.DisasterRecoveryClient().ListNotificationsAsync(new ListNotificationsRequest { Status = NotificationStatus.Delivered }).ResponseAsync,
                r => r.Notifications.Any(n => n.Webhook == hook));
            var notification = Assert.Single(listed.Notifications, n => n.Webhook == hook);
            Assert.Equal(request.Header("X-Lifeline-Delivery"), notification.Id);
            Assert.Equal((1, "recovery.plan.escalated", ""), (notification.Attempts, notification.Event, notification.LastError));
            Assert.NotNull(notification.DeliveredAt);
            Assert.Equal(request.Body, notification.Payload);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Failed_deliveries_are_retried_with_growing_backoff_and_delivered_exactly_once()
    {
        await using var receiver = await NotificationReceiver.StartAsync();
        receiver.FailNext(3);
        var hook = NewHook();
        var host = await StartWithWebhookAsync(hook, receiver.Url());
        try
        {
            var outbox = host.App.Services.GetRequiredService<NotificationOutbox>();
            var row = Assert.Single(await outbox.EnqueueAsync([hook], "test.retry", "{\"n\":1}", CancellationToken.None));

            var received = await receiver.WaitForAsync(r => r.Any(x => x.AnsweredWith == 200));
            await Task.Delay(1000); // nothing more arrives after the success
            received = receiver.Received;
            Assert.Equal([500, 500, 500, 200], received.Select(r => r.AnsweredWith));
            Assert.All(received, r => Assert.Equal(row.Id.ToString(), r.Header("X-Lifeline-Delivery")));
            Assert.All(received, r => Assert.Equal(Expected(r.Header("X-Lifeline-Timestamp"), r.Body), r.Header("X-Lifeline-Signature")));
            // Backoff: 100 ms × 2^(n−1), at most 20 % shorter (jitter).
            for (var n = 1; n < received.Count; n++)
            {
                var gap = received[n].At - received[n - 1].At;
                Assert.True(gap >= TimeSpan.FromMilliseconds(100 * Math.Pow(2, n - 1) * 0.8 - 5), $"gap {n} was {gap.TotalMilliseconds} ms");
            }

            var stored = Assert.Single(await RowsAsync(env, hook));
            Assert.Equal((2, 4, (string?)null), (stored.Status, stored.Attempts, stored.LastError));
            Assert.NotNull(stored.DeliveredAt);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_notification_is_failed_after_the_configured_attempts()
    {
        await using var receiver = await NotificationReceiver.StartAsync();
        receiver.FailAll = true;
        var hook = NewHook();
        var host = await StartWithWebhookAsync(hook, receiver.Url(), maxAttempts: 3);
        try
        {
            await host.App.Services.GetRequiredService<NotificationOutbox>().EnqueueAsync([hook], "test.give_up", "{}", CancellationToken.None);
            var failed = await EventuallyAsync(() => RowsAsync(env, hook), rows => rows.Single().Status == 3);
            Assert.Equal(3, failed.Single().Attempts);
            Assert.StartsWith("HTTP 500", failed.Single().LastError, StringComparison.Ordinal);
            await Task.Delay(500);
            Assert.Equal(3, receiver.Received.Count);

            var listed = await env.DisasterRecoveryClient().ListNotificationsAsync(new ListNotificationsRequest { Status = NotificationStatus.Failed });
            Assert.Contains(listed.Notifications, n => n.Webhook == hook && n.Attempts == 3);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task A_notification_pending_when_its_instance_stops_is_delivered_by_a_new_instance()
    {
        await using var receiver = await NotificationReceiver.StartAsync();
        receiver.FailAll = true;
        var hook = NewHook();
        var first = await StartWithWebhookAsync(hook, receiver.Url());
        await first.App.Services.GetRequiredService<NotificationOutbox>().EnqueueAsync([hook], "test.restart", "{\"survives\":true}", CancellationToken.None);
        await receiver.WaitForAsync(r => r.Count >= 1);
        await first.StopAsync();
        Assert.Equal(1, (await RowsAsync(env, hook)).Single().Status);

        receiver.FailAll = false;
        var second = await StartWithWebhookAsync(hook, receiver.Url());
        try
        {
            // The first instance kept failing (and backing off: 100 ms × 2^(n−1)) until it stopped; on a loaded
            // machine stopping takes seconds, so the next attempt may be 10 s or more away.
            var rows = await EventuallyAsync(() => RowsAsync(env, hook), r => r.Single().Status == 2, TimeSpan.FromSeconds(60));
            var delivered = receiver.Received.Where(r => r.AnsweredWith == 200).ToList();
            Assert.Equal("{\"survives\":true}", Assert.Single(delivered).Body);
            Assert.Equal(rows.Single().Id.ToString(), delivered[0].Header("X-Lifeline-Delivery"));
        }
        finally
        {
            await second.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Two_instances_deliver_each_notification_once()
    {
        await using var receiver = await NotificationReceiver.StartAsync();
        var hook = NewHook();
        var a = await StartWithWebhookAsync(hook, receiver.Url());
        var b = await StartWithWebhookAsync(hook, receiver.Url());
        try
        {
            var outbox = a.App.Services.GetRequiredService<NotificationOutbox>();
            for (var i = 0; i < 30; i++)
            {
                await outbox.EnqueueAsync([hook], "test.many", $"{{\"i\":{i}}}", CancellationToken.None);
            }
            await EventuallyAsync(() => RowsAsync(env, hook), rows => rows.All(r => r.Status == 2));
            await Task.Delay(300);
            Assert.Equal(30, receiver.Received.Count);
            Assert.Equal(30, receiver.Received.Select(r => r.Header("X-Lifeline-Delivery")).Distinct().Count());
        }
        finally
        {
            await a.StopAsync();
            await b.StopAsync();
        }
    }

    [Fact(Timeout = TestTimeouts.Default)]
    public async Task Notifications_list_newest_first_by_page_and_refuse_bad_input()
    {
        var outbox = env.Recovery.App.Services.GetRequiredService<NotificationOutbox>();
        // The main instance has no webhooks: naming one it does not know is refused and writes nothing.
        await Assert.ThrowsAsync<UnknownWebhookException>(() => outbox.EnqueueAsync(["nobody"], "test.unknown", "{}", CancellationToken.None));
        Assert.Equal(0L, await env.ScalarAsync<long>("SELECT count(*) FROM notifications WHERE webhook = 'nobody'"));

        var hook = NewHook();
        var host = await StartWithWebhookAsync(hook, "http://127.0.0.1:9/unreachable");
        try
        {
            var hostOutbox = host.App.Services.GetRequiredService<NotificationOutbox>();
            for (var i = 0; i < 5; i++)
            {
                await hostOutbox.EnqueueAsync([hook], "test.page", $"{{\"i\":{i}}}", CancellationToken.None);
            }
            var client = env.DisasterRecoveryClient();
            var seen = new List<Notification>();
            var token = "";
            do
            {
                var page = await client.ListNotificationsAsync(new ListNotificationsRequest { PageSize = 2, PageToken = token });
                Assert.True(page.Notifications.Count <= 2);
                seen.AddRange(page.Notifications);
                token = page.NextPageToken;
            }
            while (token.Length > 0);
            var mine = seen.Where(n => n.Webhook == hook).ToList();
            Assert.Equal(5, mine.Count);
            Assert.Equal(seen.Count, seen.Select(n => n.Id).Distinct().Count());
            Assert.Equal(["{\"i\":4}", "{\"i\":3}", "{\"i\":2}", "{\"i\":1}", "{\"i\":0}"], mine.Select(n => n.Payload));
        }
        finally
        {
            await host.StopAsync();
        }

        var bad = await RefusedAsync(() => env.DisasterRecoveryClient().ListNotificationsAsync(new ListNotificationsRequest
        {
            Status = (NotificationStatus)9, PageSize = -1, PageToken = "nope",
        }).ResponseAsync, StatusCode.InvalidArgument);
        Assert.Equal(["status", "page_size", "page_token"], bad.Fields());
    }
}

/// <summary>A notifications row as stored (assertions read the outbox itself).</summary>
internal sealed record NotificationEntityView(Guid Id, int Status, int Attempts, string? LastError, DateTime? DeliveredAt)
{
    public static async Task<IReadOnlyList<NotificationEntityView>> ReadAsync(RecoveryEnvironment env, string webhook)
    {
        await using var connection = new Npgsql.NpgsqlConnection(env.RecoveryDatabase);
        await connection.OpenAsync();
        await using var command = new Npgsql.NpgsqlCommand(
            "SELECT id, status, attempts, last_error, delivered_at FROM notifications WHERE webhook = @w ORDER BY created_at", connection);
        command.Parameters.AddWithValue("w", webhook);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = new List<NotificationEntityView>();
        while (await reader.ReadAsync())
        {
            rows.Add(new NotificationEntityView(reader.GetGuid(0), reader.GetInt32(1), reader.GetInt32(2),
                reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetDateTime(4)));
        }
        return rows;
    }
}
