using Google.Protobuf.WellKnownTypes;
using Lifeline.Recovery.Data;
using Lifeline.Recovery.V1;

namespace Lifeline.Recovery.Notifications;

/// <summary>Maps <c>notifications</c> rows to the contract.</summary>
public static class NotificationRecords
{
    public static Notification ToProto(this NotificationEntity e) => new()
    {
        Id = e.Id.ToString(),
        Webhook = e.Webhook,
        Event = e.Event,
        Payload = e.Payload,
        Status = (NotificationStatus)e.Status,
        Attempts = e.Attempts,
        LastError = e.LastError ?? "",
        CreatedAt = Timestamp.FromDateTime(Utc(e.CreatedAt)),
        NextAttemptAt = e.Status == (int)NotificationStatus.Pending ? Timestamp.FromDateTime(Utc(e.NextAttemptAt)) : null,
        DeliveredAt = e.DeliveredAt is { } d ? Timestamp.FromDateTime(Utc(d)) : null,
    };

    private static DateTime Utc(DateTime value) => value.Kind == DateTimeKind.Utc ? value : DateTime.SpecifyKind(value, DateTimeKind.Utc);
}
