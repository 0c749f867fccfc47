using Microsoft.Extensions.Options;

namespace Lifeline.Worker;

/// <summary>Where a <see cref="LifelineWorker"/> connects, who it is, and how much work it takes at once.</summary>
public sealed class LifelineWorkerOptions
{
    /// <summary>The configuration section the options bind from by convention: <c>Lifeline:Worker</c>.</summary>
    public const string SectionName = "Lifeline:Worker";

    /// <summary>
    /// The gateway's gRPC address, e.g. <c>http://127.0.0.1:5100</c> (cleartext HTTP/2) or an <c>https://</c> address.
    /// Required. Services answer only calls the gateway (or another service) vouches for, so workers call the gateway.
    /// </summary>
    public Uri? Target { get; set; }

    /// <summary>The gateway address for registry calls when it differs from <see cref="Target"/> (rarely: one gateway routes every service).</summary>
    public Uri? RegistryTarget { get; set; }

    /// <summary>API key sent as <c>authorization: Bearer &lt;key&gt;</c> on every call. The gateway derives the tenant from it.</summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// The worker's name, unique within its tenant. Registering a name again continues the same worker (same id,
    /// next session). Default: <c>dotnet-&lt;host&gt;-&lt;pid&gt;</c>.
    /// </summary>
    public string Name { get; set; } = $"dotnet-{Environment.MachineName}-{Environment.ProcessId}".ToLowerInvariant();

    /// <summary>The software version reported at registration.</summary>
    public string Version { get; set; } = typeof(LifelineWorkerOptions).Assembly.GetName().Version?.ToString() ?? "0.0.0";

    /// <summary>How many tasks run at once (1 to 500). Default 4.</summary>
    public int MaxConcurrentTasks { get; set; } = 4;

    /// <summary>Lease of each task (1 s to 1 h); extended while the handler runs. Default 30 s.</summary>
    public TimeSpan LeaseDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long one LeaseTasks call waits for work to arrive (0 to 30 s). Default 20 s.</summary>
    public TimeSpan PollWait { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>
    /// On shutdown, how long running handlers get to finish after they were told to stop (their cancellation token).
    /// What still runs then is released. Keep it below the host's <c>HostOptions.ShutdownTimeout</c> (30 s by default).
    /// Default 20 s.
    /// </summary>
    public TimeSpan ShutdownGrace { get; set; } = TimeSpan.FromSeconds(20);

    /// <summary>Deadline of each unary call (register, complete, extend a lease, …); also how long a heartbeat on the stream may wait for its answer. Default 10 s.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long registration keeps retrying while the suite is unavailable (starting, restarting). Default 60 s.</summary>
    public TimeSpan RegistrationTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Stop after this many tasks have ended (completed, failed or given up); null runs until stopped. For tests and batch jobs.</summary>
    public int? StopAfterTasks { get; set; }

    /// <summary>
    /// Where the offline journal lives: <c>&lt;JournalDirectory&gt;/&lt;Name&gt;.journal</c>. Outcomes that cannot be
    /// delivered are appended there (fsynced) and replayed once the gateway answers again, also by the next process
    /// with the same <see cref="Name"/> and directory. Relative to the working directory. Default <c>.lifeline-journal</c>.
    /// </summary>
    public string JournalDirectory { get; set; } = ".lifeline-journal";

    /// <summary>
    /// How long transient failures (the gateway unreachable, a call timing out) are retried, from the first failure,
    /// before the worker goes offline: it journals outcomes and stops leasing until a probe succeeds. Default 10 s.
    /// </summary>
    public TimeSpan OfflineAfter { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a completion may wait for others to go out with it in one unary <c>CompleteTasks</c> call (0 to 1 s).
    /// Default 5 ms. Not used while the dispatch stream is open: there each completion goes out at once, and the queue
    /// groups those that arrive together.
    /// </summary>
    public TimeSpan OutcomeBatchWindow { get; set; } = TimeSpan.FromMilliseconds(5);

    /// <summary>Most completions in one <c>CompleteTasks</c> call (1 to 1,000); a full batch goes out at once. Default 100.</summary>
    public int MaxOutcomeBatch { get; set; } = 100;

    /// <summary>
    /// Heartbeat over one <c>HeartbeatStream</c> (commands arrive as soon as they are issued). False, or when the
    /// stream cannot be opened, uses unary <c>Heartbeat</c> calls. Default true.
    /// </summary>
    public bool UseHeartbeatStream { get; set; } = true;

    /// <summary>
    /// Take tasks over one <c>Dispatch</c> stream (the queue pushes them as slots free up; outcomes, progress and lease
    /// extensions go over the same stream). False leases with the <c>LeaseTasks</c> long poll, which the worker also
    /// falls back to when the queue answers the stream with <c>UNIMPLEMENTED</c>. Default true.
    /// </summary>
    public bool UseDispatchStream { get; set; } = true;

    /// <summary>
    /// When the worker finishes on its own (drained, <see cref="StopAfterTasks"/> reached, its session taken over),
    /// stop the host application too. Default true: a host whose worker has ended usually has nothing left to do.
    /// </summary>
    public bool StopHostWhenFinished { get; set; } = true;
}

/// <summary>Validates <see cref="LifelineWorkerOptions"/> at start, naming the offending setting.</summary>
internal sealed class LifelineWorkerOptionsValidator : IValidateOptions<LifelineWorkerOptions>
{
    public ValidateOptionsResult Validate(string? name, LifelineWorkerOptions options)
    {
        var failures = new List<string>();
        const string Section = LifelineWorkerOptions.SectionName;

        if (options.Target is not { IsAbsoluteUri: true } target || target.Scheme is not ("http" or "https"))
        {
            failures.Add($"{Section}:Target must be an absolute http:// or https:// address (got '{options.Target}').");
        }

        if (options.RegistryTarget is { } registry && (!registry.IsAbsoluteUri || registry.Scheme is not ("http" or "https")))
        {
            failures.Add($"{Section}:RegistryTarget must be an absolute http:// or https:// address (got '{registry}').");
        }

        if (string.IsNullOrWhiteSpace(options.Name) || options.Name.Length > 128)
        {
            failures.Add($"{Section}:Name must have 1 to 128 characters.");
        }

        if (options.MaxConcurrentTasks is < 1 or > 500)
        {
            failures.Add($"{Section}:MaxConcurrentTasks must be between 1 and 500 (got {options.MaxConcurrentTasks}).");
        }

        Require(options.LeaseDuration, TimeSpan.FromSeconds(1), TimeSpan.FromHours(1), "LeaseDuration");
        Require(options.PollWait, TimeSpan.Zero, TimeSpan.FromSeconds(30), "PollWait");
        Require(options.ShutdownGrace, TimeSpan.Zero, TimeSpan.FromHours(1), "ShutdownGrace");
        Require(options.CallTimeout, TimeSpan.FromMilliseconds(100), TimeSpan.FromMinutes(5), "CallTimeout");
        Require(options.RegistrationTimeout, TimeSpan.Zero, TimeSpan.FromHours(1), "RegistrationTimeout");
        Require(options.OfflineAfter, TimeSpan.Zero, TimeSpan.FromHours(1), "OfflineAfter");
        Require(options.OutcomeBatchWindow, TimeSpan.Zero, TimeSpan.FromSeconds(1), "OutcomeBatchWindow");

        if (string.IsNullOrWhiteSpace(options.JournalDirectory))
        {
            failures.Add($"{Section}:JournalDirectory must name a directory.");
        }

        if (options.MaxOutcomeBatch is < 1 or > 1000)
        {
            failures.Add($"{Section}:MaxOutcomeBatch must be between 1 and 1000 (got {options.MaxOutcomeBatch}).");
        }

        if (options.StopAfterTasks is < 1)
        {
            failures.Add($"{Section}:StopAfterTasks must be at least 1 when set (got {options.StopAfterTasks}).");
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);

        void Require(TimeSpan value, TimeSpan min, TimeSpan max, string setting)
        {
            if (value < min || value > max)
            {
                failures.Add($"{Section}:{setting} must be between {min} and {max} (got {value}).");
            }
        }
    }
}
