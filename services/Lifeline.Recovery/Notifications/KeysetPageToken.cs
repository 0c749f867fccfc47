using System.Globalization;

namespace Lifeline.Recovery.Notifications;

/// <summary>
/// A page token of lists ordered newest first by (created_at, id): the last row of the previous page.
/// Stable while rows are added (new rows sort before it). Text form <c>&lt;unix microseconds&gt;_&lt;uuid&gt;</c>.
/// </summary>
public readonly record struct KeysetPageToken(DateTime CreatedAt, Guid Id)
{
    public override string ToString() =>
        ((CreatedAt.ToUniversalTime() - DateTime.UnixEpoch).Ticks / 10).ToString(CultureInfo.InvariantCulture) + "_" + Id.ToString("N");

    public static bool TryParse(string text, out KeysetPageToken token)
    {
        token = default;
        var sep = text.IndexOf('_', StringComparison.Ordinal);
        if (sep <= 0
            || !long.TryParse(text.AsSpan(0, sep), NumberStyles.None, CultureInfo.InvariantCulture, out var micros)
            || !Guid.TryParseExact(text.AsSpan(sep + 1), "N", out var id))
        {
            return false;
        }
        token = new KeysetPageToken(DateTime.SpecifyKind(DateTime.UnixEpoch.AddTicks(micros * 10), DateTimeKind.Utc), id);
        return true;
    }
}
