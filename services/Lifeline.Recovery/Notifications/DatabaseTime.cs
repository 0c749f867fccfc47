namespace Lifeline.Recovery.Notifications;

/// <summary>Timestamps as PostgreSQL stores them.</summary>
public static class DatabaseTime
{
    /// <summary>Now, at PostgreSQL's precision (microseconds), so a reply carries exactly what a later read returns.</summary>
    public static DateTime Now(this TimeProvider time)
    {
        var now = time.GetUtcNow().UtcDateTime;
        return new DateTime(now.Ticks - now.Ticks % 10, DateTimeKind.Utc);
    }
}
