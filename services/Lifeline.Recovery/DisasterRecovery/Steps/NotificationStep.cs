using System.Text.Json;
using Lifeline.Recovery.Notifications;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.DisasterRecovery.Steps;

/// <summary>
/// <c>notification</c>: puts a signed webhook notification (event <c>disaster_recovery.notification</c>) for each
/// target webhook — every configured one when there are no targets — in the outbox, from which it is delivered
/// with retries. Fails when a target is not configured, or when none is configured at all.
/// </summary>
public sealed class NotificationStep(NotificationOutbox outbox) : IDrStepExecutor
{
    public const string Event = "disaster_recovery.notification";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public DrStepType Type => DrStepType.Notification;

    public async Task<DrStepOutcome> ExecuteAsync(DrStepContext context, CancellationToken ct)
    {
        if (context.Step.Targets.Count == 0 && outbox.Configured.Count == 0)
        {
            return DrStepOutcome.Failed("no webhook is configured (Recovery:Webhooks): nobody to notify");
        }
        var payload = JsonSerializer.Serialize(new
        {
            Event,
            RunId = context.RunId.ToString(),
            PlanId = context.PlanId.ToString(),
            PlanName = context.PlanName,
            Step = context.Step.Name,
            StepIndex = context.Index,
            Steps = context.Results.Select(r => new { r.Name, Type = r.Type.ToString(), Status = r.Status.ToString(), r.Message }),
        }, Json);
        try
        {
            var rows = await outbox.EnqueueAsync([.. context.Step.Targets], Event, payload, ct);
            return DrStepOutcome.Ok($"queued notification(s) for webhook(s) {string.Join(", ", rows.Select(r => $"{r.Webhook} ({r.Id})"))}");
        }
        catch (UnknownWebhookException e)
        {
            return DrStepOutcome.Failed(e.Message);
        }
    }
}
