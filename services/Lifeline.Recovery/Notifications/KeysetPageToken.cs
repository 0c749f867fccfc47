using Lifeline.ServiceDefaults.Paging;

namespace Lifeline.Recovery.Notifications;

/// <summary>
/// The position of lists ordered newest first by (created_at, id): the last row of the previous page. Stable while
/// rows are added (new rows sort before it). Its text form is a page token of <see cref="PageTokens"/>, bound to
/// the listing that issued it.
/// </summary>
public readonly record struct KeysetPageToken(DateTime CreatedAt, Guid Id)
{
    public const string RecoveryPlans = "recovery.recovery_plans";
    public const string DisasterRecoveryPlans = "recovery.disaster_recovery_plans";
    public const string Notifications = "recovery.notifications";
    public const string RecoveryActions = "recovery.recovery_actions";
    public const string SystemStates = "recovery.system_states";

    public string Encode(string listing) => PageTokens.Encode(listing, CreatedAt, Id);

    public static bool TryDecode(string listing, string text, out KeysetPageToken token)
    {
        var ok = PageTokens.TryDecode(listing, text, out var createdAt, out var id);
        token = ok ? new KeysetPageToken(createdAt, id) : default;
        return ok;
    }
}
