using System.ComponentModel.DataAnnotations;

namespace Lifeline.Recovery.Options;

/// <summary>Settings of the recovery service (section <c>Recovery</c>), validated at start.</summary>
public sealed class RecoveryOptions
{
    public const string Section = "Recovery";

    /// <summary>
    /// Tenants whose tasks and workers recovery always watches and acts on (see <see cref="DiscoverTenants"/> for the
    /// others); <c>default</c> when none are configured (applied
    /// after binding: the binder appends configured entries to an array that already has items).
    /// </summary>
    [MinLength(1)]
    public string[] Tenants { get; set; } = [];

    /// <summary>
    /// Also cover every tenant the queue has unfinished tasks for and the registry has registered workers for (asked
    /// again before every scan), beyond <see cref="Tenants"/>.
    /// </summary>
    public bool DiscoverTenants { get; set; } = true;

    /// <summary>This instance's name as a holder in the leader election (default: host, process id and a random suffix).</summary>
    public string? InstanceId { get; set; }

    /// <summary>How long a leader's term lives without renewal (renewed every third of it): a standby takes over within this long after the leader dies.</summary>
    [Range(typeof(TimeSpan), "00:00:00.200", "00:10:00")]
    public TimeSpan LeaderLeaseDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often the leader scans in-flight tasks (the level-triggered path; lost workers are handled at once).</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "01:00:00")]
    public TimeSpan ScanInterval { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>A task assigned but not started for longer than this is reassigned once its holder is gone or its lease expired.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "1.00:00:00")]
    public TimeSpan UnstartedThreshold { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Tasks read per ListTasks page while scanning.</summary>
    [Range(10, 1000)]
    public int ScanPageSize { get; set; } = 1000;

    /// <summary>How often the system state is snapshotted (also on every status change).</summary>
    [Range(typeof(TimeSpan), "00:00:00.100", "1.00:00:00")]
    public TimeSpan StateSnapshotInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How far past its own timeout a running task must be before the timeout check reports it.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan TimeoutGrace { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Webhooks notifications go to (disaster recovery, escalations).</summary>
    public List<WebhookOptions> Webhooks { get; set; } = [];

    /// <summary>Delivery attempts of a notification before it is marked failed.</summary>
    [Range(1, 100)]
    public int WebhookMaxAttempts { get; set; } = 10;

    /// <summary>Backoff after the first failed delivery; doubles per attempt up to <see cref="WebhookMaxBackoff"/>.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "01:00:00")]
    public TimeSpan WebhookInitialBackoff { get; set; } = TimeSpan.FromSeconds(1);

    [Range(typeof(TimeSpan), "00:00:00.010", "1.00:00:00")]
    public TimeSpan WebhookMaxBackoff { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How often the outbox is polled for due notifications.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:10:00")]
    public TimeSpan WebhookPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Plans per error code that replace the category × severity matrix: code → action types (e.g. ["retry","escalate"]).</summary>
    public Dictionary<string, string[]> CustomPlans { get; set; } = [];
}

/// <summary>One webhook: where notifications are POSTed and the secret they are signed with.</summary>
public sealed class WebhookOptions
{
    [Required]
    public string Name { get; set; } = "";

    [Required]
    public string Url { get; set; } = "";

    /// <summary>HMAC-SHA256 key of the <c>X-Lifeline-Signature</c> header.</summary>
    [Required]
    public string Secret { get; set; } = "";
}
